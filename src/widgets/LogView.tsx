import type { TranslationBundle } from '@jupyterlab/translation';
import * as React from 'react';

import { isAtBottom } from '../logbuffer';
import { LogFollower } from '../logfollower';
import type { IJob, IJobsModel } from '../tokens';

/** Props of the live log view. */
export interface ILogViewProps {
  model: IJobsModel;
  job: IJob;
  trans: TranslationBundle;
  /** Open the full log file in JupyterLab. */
  onOpenFile: () => void;
}

function formatBytes(bytes: number): string {
  if (bytes < 1024) {
    return `${bytes} B`;
  }
  if (bytes < 1024 * 1024) {
    return `${(bytes / 1024).toFixed(1)} KiB`;
  }
  if (bytes < 1024 * 1024 * 1024) {
    return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  }
  return `${(bytes / 1024 / 1024 / 1024).toFixed(2)} GiB`;
}

/**
 * The live log of one job: follows the file incrementally, keeps only its
 * tail in a single text node, auto-scrolls unless the user scrolled up.
 */
export function LogView(props: ILogViewProps): JSX.Element {
  const { model, job, trans } = props;
  const [follower, setFollower] = React.useState<LogFollower | null>(null);
  const [, setVersion] = React.useState(0);
  const preRef = React.useRef<HTMLPreElement>(null);
  const stick = React.useRef(true);
  const [following, setFollowing] = React.useState(true);

  React.useEffect(() => {
    const created = new LogFollower({
      jobId: job.id,
      read: (id, offset, limit) => model.readLog(id, offset, limit),
      tailBytes: model.settings.logTailKiB * 1024,
      intervalSeconds: model.settings.logPollIntervalSeconds,
      isHidden: () => !model.visible
    });
    const onChange = () => setVersion(v => v + 1);
    created.changed.connect(onChange);
    setFollower(created);
    stick.current = true;
    setFollowing(true);
    return () => {
      created.changed.disconnect(onChange);
      created.dispose();
    };
  }, [job.id, model]);

  // A state change (e.g. the job ended) is a good moment to read again.
  React.useEffect(() => {
    follower?.refresh();
  }, [job.state, follower]);

  const state = follower?.state;
  const text = state?.text ?? '';

  React.useLayoutEffect(() => {
    const node = preRef.current;
    if (node && stick.current) {
      node.scrollTop = node.scrollHeight;
    }
  }, [text]);

  const onScroll = React.useCallback(() => {
    const node = preRef.current;
    if (!node) {
      return;
    }
    const atBottom = isAtBottom(
      node.scrollTop,
      node.scrollHeight,
      node.clientHeight
    );
    if (atBottom !== stick.current) {
      stick.current = atBottom;
      setFollowing(atBottom);
    }
  }, []);

  const jumpToEnd = () => {
    const node = preRef.current;
    stick.current = true;
    setFollowing(true);
    if (node) {
      node.scrollTop = node.scrollHeight;
    }
  };

  let status: string;
  if (!state || !state.started) {
    status = trans.__('Waiting for output…');
  } else if (state.complete) {
    status = trans.__('Complete · %1', formatBytes(state.size));
  } else {
    status = trans.__('Following · %1', formatBytes(state.size));
  }

  return (
    <div className="jp-AWSJobs-logView">
      <div className="jp-AWSJobs-logHeader">
        <span className="jp-AWSJobs-logTitle">{trans.__('Log')}</span>
        <span
          className="jp-AWSJobs-logStatus"
          data-complete={state?.complete ? 'true' : 'false'}
        >
          {status}
        </span>
        {!following && (
          <button
            className="jp-AWSJobs-linkButton jp-AWSJobs-logFollow"
            onClick={jumpToEnd}
          >
            {trans.__('Follow')}
          </button>
        )}
      </div>
      {state?.truncated && (
        <div className="jp-AWSJobs-logTruncated">
          {trans.__('Earlier output truncated — ')}
          <button
            className="jp-AWSJobs-linkButton"
            onClick={() => props.onOpenFile()}
          >
            {trans.__('open the full log file')}
          </button>
        </div>
      )}
      <pre
        className="jp-AWSJobs-log"
        ref={preRef}
        onScroll={onScroll}
        data-job-id={job.id}
        data-truncated={state?.truncated ? 'true' : 'false'}
      >
        {text}
      </pre>
      {follower?.error && (
        <div className="jp-AWSJobs-logError" role="alert">
          {follower.error}
        </div>
      )}
    </div>
  );
}
