const jestJupyterLab = require('@jupyterlab/testutils/lib/jest-config');

const esModules = [
  '@codemirror',
  '@jupyter/react-components',
  '@jupyter/web-components',
  '@marijn',
  '@microsoft',
  'color',
  'exenv-es6',
  'marked',
  '@jupyter/ydoc',
  '@jupyterlab/',
  'lib0',
  'nanoid',
  'vscode-ws-jsonrpc',
  'y-protocols',
  'y-websocket',
  'yjs'
].join('|');

const baseConfig = jestJupyterLab(__dirname);

module.exports = {
  ...baseConfig,
  automock: false,
  collectCoverageFrom: [
    'src/**/*.{ts,tsx}',
    '!src/**/*.d.ts',
    '!src/**/.ipynb_checkpoints/*'
  ],
  coverageReporters: ['lcov', 'text'],
  testRegex: 'src/.*/.*.spec.ts[x]?$',
  // Python environments and the browser tests hold copies of JupyterLab packages.
  modulePathIgnorePatterns: [
    '<rootDir>/.venv/',
    '<rootDir>/benchmarks/',
    '<rootDir>/ui-tests/',
    '<rootDir>/awsjobs_lab/',
    '<rootDir>/lib/'
  ],
  transformIgnorePatterns: [`/node_modules/(?!${esModules}).+`]
};
