/**
 * Where the EC2 browser tests find the simulated AWS and the JupyterLab whose
 * EC2 backend talks to it (both started by playwright.config.js).
 */
export const SIM_URL = `http://127.0.0.1:${process.env.AWSJOBS_SIM_PORT || '8897'}`;
export const EC2_URL = `http://127.0.0.1:${process.env.AWSJOBS_UI_EC2_PORT || '8899'}`;
