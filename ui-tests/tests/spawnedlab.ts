/**
 * A JupyterLab a test starts and stops itself (beside the ones
 * playwright.config.js starts): its own configuration file and port, its root
 * folder and job database in folders of the test, so they outlive a restart.
 * Its configuration file reads them from JUPYTERLAB_GALATA_ROOT_DIR and
 * AWSJOBS_UI_DATA_PATH, and its port from AWSJOBS_UI_EC2_PORT.
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { SIM_URL } from './simulated';

/** Poll until `check` holds (or fail after `seconds`). */
export async function until(
  check: () => Promise<boolean>,
  seconds: number,
  what: string
): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  while (!(await check())) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise(resolve => setTimeout(resolve, 500));
  }
}

async function answers(url: string): Promise<boolean> {
  try {
    return (await fetch(url)).ok;
  } catch {
    return false;
  }
}

export class SpawnedLab {
  /**
   * @param config - the JupyterLab configuration file, in ui-tests/
   * @param port - the port it listens on (127.0.0.1)
   * @param prefix - the name of its temporary folder
   */
  constructor(
    readonly config: string,
    readonly port: string,
    prefix: string
  ) {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    this.root = path.join(base, 'root');
    this.data = path.join(base, 'data');
    fs.mkdirSync(this.root);
    fs.mkdirSync(this.data);
  }

  readonly root: string;
  readonly data: string;

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this._process = spawn('jupyter', ['lab', '--config', this.config], {
      cwd: path.resolve(__dirname, '..'),
      env: {
        ...process.env,
        AWSJOBS_UI_EC2_PORT: this.port,
        AWSJOBS_SIM_URL: SIM_URL,
        AWSJOBS_UI_DATA_PATH: this.data,
        JUPYTERLAB_GALATA_ROOT_DIR: this.root
      },
      stdio: 'ignore'
    });
    await until(() => answers(`${this.url}/lab`), 120, 'the server');
  }

  /** SIGTERM (SIGKILL if it lingers); resolves once it has exited. */
  async stop(): Promise<void> {
    const child = this._process;
    this._process = null;
    if (!child || child.exitCode !== null) {
      return;
    }
    const exited = new Promise(resolve => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 20000);
    await exited;
    clearTimeout(timer);
    await until(
      async () => !(await answers(`${this.url}/lab`)),
      30,
      'the stop'
    );
  }

  private _process: ChildProcess | null = null;
}
