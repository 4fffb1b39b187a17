/** Command ids of awsjobs-lab (re-exported by `commands.ts`). */
export namespace CommandIDs {
  export const runFile = 'awsjobs:run-file';
  export const runCurrent = 'awsjobs:run-current';
  export const stopJob = 'awsjobs:stop-job';
  export const openPanel = 'awsjobs:open-panel';
  export const openOutput = 'awsjobs:open-output';
  export const openLog = 'awsjobs:open-log';
  export const deleteJob = 'awsjobs:delete-job';
  export const rerunJob = 'awsjobs:rerun-job';
  export const refresh = 'awsjobs:refresh';
}
