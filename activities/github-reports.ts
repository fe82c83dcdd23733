import { Context, log } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import type { Config } from '../common/config';
import { gitHubRefusal, type GitHub } from '../common/github';
import type { CommitStatusState, GitHubDelivery, GitHubReport } from '../common/github-reports';
import type { BuildRef } from '../common/types';
import {
  githubReportsSignal,
  githubReportsWorkflowId,
  type GitHubReports,
  type GitHubReportsWorkflow,
} from '../workflows/definitions';
import { GitHubDeployments } from './github-deployments';
import { count } from './worker-metrics';

// A build's steps queue their GitHub reports with the reporter workflow (a signal: durable, a few
// milliseconds) instead of posting them: under a burst GitHub refuses most of them (80
// content-creating requests a minute), and a report refused was lost. The reporter delivers them
// here, one at a time, and stops at GitHub's first refusal of the kind asking again may mend.

/** Hands reports to the reporter; tests give the activities their own. */
export type ReportQueue = (reports: GitHubReport[]) => Promise<void>;

/** The reports of a build's step, for the targets this configuration reports to. */
export function reportsOf(
  config: Config,
  build: BuildRef,
  state: CommitStatusState | 'inactive',
  description: string,
): GitHubReport[] {
  const reports: GitHubReport[] = [];
  // Not the whole BuildRef: the reporter carries thousands of them when GitHub makes it wait.
  const reported = { name: build.name, commit: build.commit };
  if (state !== 'inactive' && !config.disableCommitStatuses)
    reports.push({ build: reported, target: 'status', state, description });
  if (config.githubDeployments) reports.push({ build: reported, target: 'deployment', state, description });
  return reports;
}

/**
 * Queues reports with the reporter of `config.taskQueue`, starting it if it is not running; from
 * an activity, with its worker's client.
 */
export function signalReporter(config: Config, client = (): Client => Context.current().client): ReportQueue {
  return async (reports) => {
    await client().workflow.signalWithStart<GitHubReportsWorkflow, [GitHubReport[]]>(
      'githubReportsWorkflow',
      {
        workflowId: githubReportsWorkflowId(config.taskQueue),
        taskQueue: config.taskQueue,
        args: [{ queued: [], refusals: 0 } satisfies GitHubReports],
        signal: githubReportsSignal,
        signalArgs: [reports],
      },
    );
  };
}

/**
 * `readInitLog`: the build's init log (a failed build's is kept), which a failure's check run
 * shows; undefined when there is none.
 */
export function createReportDelivery(
  config: Config,
  github: GitHub,
  readInitLog: (build: string) => Promise<string | undefined>,
) {
  const deployments = new GitHubDeployments(config, github);
  const post = async ({ build, target, state, description }: GitHubReport) => {
    if (target === 'deployment') return deployments.report(build, state, description);
    if (state === 'inactive') return;
    const targetUrl = `${config.baseUrl}/builds/${build.name}?live`;
    if (config.githubCheckRuns) {
      // The report goes without the log when it cannot be read: the build's page has it too.
      const log = state === 'failure' ? await readInitLog(build.name).catch(() => undefined) : undefined;
      await github.postCheckRun(build.commit, {
        build: build.name,
        state,
        description,
        detailsUrl: targetUrl,
        log,
      });
    } else await github.postCommitStatus(build.commit, { state, description, targetUrl });
  };
  return {
    /**
     * Posts `reports` in order (the GitHub client spaces them), up to GitHub's first refusal that
     * asking later may mend (its rate limit, an outage); a report refused for good is logged and
     * counted as done: asking again would get the same answer.
     */
    async deliverGitHubReports(reports: GitHubReport[]): Promise<GitHubDelivery> {
      for (const [done, report] of reports.entries()) {
        Context.current().heartbeat(done);
        try {
          await post(report);
        } catch (error) {
          const refusal = gitHubRefusal(error);
          const about = { build: report.build.name, target: report.target, state: report.state };
          if (refusal) {
            log.warn('GitHub refused a report; the reporter waits and asks again', {
              ...about,
              refusal,
              error: String(error),
            });
            return { done, refusal };
          }
          log.warn('GitHub refused a report for good; dropped', { ...about, error: String(error) });
          const { status } = error as { status?: unknown };
          count('githubReportsRefused', 1, {
            target: report.target,
            status: typeof status === 'number' ? String(status) : 'none',
          });
        }
      }
      return { done: reports.length };
    },
  };
}
