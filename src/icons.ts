import { LabIcon } from '@jupyterlab/ui-components';

import jobsSvgstr from '../style/icons/jobs.svg';

/** The icon of the Jobs panel and the "Run as job" commands. */
export const jobsIcon = new LabIcon({
  name: 'awsjobs-lab:jobs',
  svgstr: jobsSvgstr
});
