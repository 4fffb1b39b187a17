/**
 * Galata (Playwright) configuration of the awsjobs-lab browser tests:
 * a real JupyterLab started by `jlpm start`, in Debian's Chromium.
 */
const path = require('path');
const baseConfig = require('@jupyterlab/galata/lib/playwright-config');

const port = process.env.AWSJOBS_UI_PORT || '8898';
const baseURL = `http://127.0.0.1:${port}`;
// The Instances view's tests: a second JupyterLab with the EC2 backend, against
// the simulated AWS (tests/awssim) started here too, all on 127.0.0.1.
const ec2Port = process.env.AWSJOBS_UI_EC2_PORT || '8899';
const simPort = process.env.AWSJOBS_SIM_PORT || '8897';
const simURL = `http://127.0.0.1:${simPort}`;
const repoRoot = path.resolve(__dirname, '..');

module.exports = {
  ...baseConfig,
  testDir: './tests',
  timeout: 120 * 1000,
  workers: 1,
  retries: process.env.CI ? 1 : 0,
  reporter: [['list'], ['html', { open: 'never' }]],
  expect: {
    timeout: 15 * 1000,
    toHaveScreenshot: {
      // Fonts and antialiasing differ a little between machines.
      maxDiffPixelRatio: 0.03,
      threshold: 0.3,
      animations: 'disabled'
    }
  },
  use: {
    ...baseConfig.use,
    baseURL,
    headless: true,
    // No ffmpeg can be downloaded here: no video.
    video: 'off',
    trace: 'retain-on-failure',
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
      args: [
        '--no-sandbox',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--disable-gpu'
      ]
    }
  },
  webServer: [
    {
      command: 'jlpm start',
      url: `${baseURL}/lab`,
      timeout: 120 * 1000,
      reuseExistingServer: !process.env.CI,
      env: { ...process.env, AWSJOBS_UI_PORT: port }
    },
    {
      command: `python -m tests.awssim --port ${simPort}`,
      cwd: repoRoot,
      url: `${simURL}/awssim/config`,
      timeout: 60 * 1000,
      reuseExistingServer: !process.env.CI
    },
    {
      command: 'jlpm start:ec2',
      url: `http://127.0.0.1:${ec2Port}/lab`,
      timeout: 120 * 1000,
      reuseExistingServer: !process.env.CI,
      env: {
        ...process.env,
        AWSJOBS_UI_EC2_PORT: ec2Port,
        AWSJOBS_SIM_URL: simURL
      }
    }
  ]
};
