import type { Config } from '../common/config';
import { BUILD_STATUSES } from '../common/types';

// The API's contract, served at /api/v1/openapi.json; a test holds it to the real routes.

/** What /status and /repos say of their freshness. */
const asOf =
  "As visibility had the builds when the request arrived, or later: each API process keeps an index of the builds' repos and statuses, kept current from visibility's changes";

const filterParameters = ['repo', 'target_branch', 'branch', 'pr'].map((name) => ({
  name,
  in: 'query',
  required: false,
  schema: name === 'pr' ? { type: 'integer', minimum: 1 } : { type: 'string' },
}));
const logResponse = {
  description:
    'The log as an HTML page (ANSI colours as ansi2html classes), or as text to Accept: text/plain',
  content: { 'text/html': { schema: { type: 'string' } }, 'text/plain': { schema: { type: 'string' } } },
};
const nameParameter = { name: 'name', in: 'path', required: true, schema: { type: 'string' } };
const error = (description: string) => ({
  description,
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
});
const json = (description: string, schema: object) => ({
  description,
  content: { 'application/json': { schema } },
});
const admin = [{ basic: [] }];
const buildRef = { $ref: '#/components/schemas/Build' };
const action = (summary: string) => ({
  summary,
  parameters: [nameParameter],
  responses: {
    '200': json('Asked', { type: 'null' }),
    '404': error('Unknown build'),
    '409': error('Not possible now (the build is being undeployed)'),
    '503': error('Temporal unreachable'),
  },
});
const trigger = (summary: string, parameter: object) => ({
  summary,
  security: admin,
  parameters: [{ name: 'repo', in: 'query', required: true, schema: { type: 'string' } }, parameter],
  responses: {
    '200': json('Build started (or already running)', {
      type: 'object',
      properties: { name: { type: 'string' } },
    }),
    '400': error('Bad parameters or unsupported repo/branch'),
    '401': error('Admin credentials required'),
  },
});

export function openApiDocument(config: Config) {
  return {
    openapi: '3.1.0',
    info: { title: 'runboat-temporal', version: '1', description: "runboat's API, on Temporal workflows" },
    servers: [{ url: `${config.baseUrl}/api/v1` }],
    components: {
      securitySchemes: { basic: { type: 'http', scheme: 'basic' } },
      schemas: {
        Error: { type: 'object', required: ['detail'], properties: { detail: { type: 'string' } } },
        CommitInfo: {
          type: 'object',
          properties: {
            repo: { type: 'string' },
            target_branch: { type: 'string' },
            pr: { type: ['integer', 'null'] },
            git_commit: { type: 'string' },
          },
        },
        Build: {
          type: 'object',
          properties: {
            name: { type: 'string' },
            commit_info: { $ref: '#/components/schemas/CommitInfo' },
            deploy_link: { type: 'string' },
            deploy_link_mailhog: { type: 'string' },
            repo_target_branch_link: { type: 'string' },
            repo_pr_link: { type: ['string', 'null'] },
            repo_commit_link: { type: 'string' },
            webui_link: { type: 'string' },
            status: {
              enum: BUILD_STATUSES,
            },
            init_status: { enum: ['todo', 'started', 'succeeded', 'failed'] },
            created: { type: 'string', format: 'date-time' },
            last_scaled: {
              type: 'string',
              format: 'date-time',
              description: 'Creation time until first scaled',
            },
            workflow_link: { type: 'string', description: 'The build in the Temporal Web UI' },
          },
        },
        Status: {
          type: 'object',
          properties: Object.fromEntries(
            [
              'deployed',
              'max_deployed',
              'failed',
              'stopped',
              'started',
              'max_started',
              'to_initialize',
              'initializing',
              'max_initializing',
              'undeploying',
            ].map((field) => [field, { type: 'integer' }]),
          ),
        },
      },
    },
    paths: {
      '/status': {
        get: {
          summary: 'Counts and limits',
          description: asOf,
          responses: { '200': json('Counts', { $ref: '#/components/schemas/Status' }) },
        },
      },
      '/repos': {
        get: {
          summary: 'Repos with builds',
          description: asOf,
          responses: {
            '200': json('Repos', {
              type: 'array',
              items: { type: 'object', properties: { name: { type: 'string' }, link: { type: 'string' } } },
            }),
          },
        },
      },
      '/builds': {
        get: {
          summary: 'Builds, oldest first',
          parameters: [
            ...filterParameters,
            { name: 'status', in: 'query', required: false, schema: { type: 'string' } },
          ],
          responses: {
            '200': json('Builds', { type: 'array', items: buildRef }),
            '400': error('Bad parameters'),
          },
        },
        delete: {
          summary: 'Undeploy the matching builds',
          security: admin,
          parameters: filterParameters,
          responses: {
            '200': json('Undeployed', { type: 'object' }),
            '400': error('No filter'),
            '401': error('Admin credentials required'),
          },
        },
      },
      '/builds/trigger/branch': {
        post: trigger('Build the head of a branch', {
          name: 'branch',
          in: 'query',
          required: true,
          schema: { type: 'string' },
        }),
      },
      '/builds/trigger/pr': {
        post: trigger('Build the head of a pull request', {
          name: 'pr',
          in: 'query',
          required: true,
          schema: { type: 'integer' },
        }),
      },
      '/builds/{name}': {
        get: {
          summary: 'One build',
          parameters: [nameParameter],
          responses: { '200': json('The build', buildRef), '404': error('Unknown build') },
        },
        delete: {
          ...action('Undeploy the build; with force=true, without its cleanup job (a stuck undeploy)'),
          security: admin,
          parameters: [
            nameParameter,
            { name: 'force', in: 'query', required: false, schema: { enum: ['true', 'false'] } },
            {
              name: 'reason',
              in: 'query',
              required: false,
              description: "Why the undeploy is forced; kept in the build's history",
              schema: { type: 'string', maxLength: 500 },
            },
          ],
        },
      },
      '/builds/{name}/visit': {
        post: {
          summary: 'Record a visit (postpones the idle stop); at most one a minute per build is kept',
          parameters: [nameParameter],
          responses: { '204': { description: 'Noted' }, '404': error('Unknown build') },
        },
      },
      '/builds/{name}/init-queue': {
        get: {
          summary:
            'Where the build is in the line for init slots (not in runboat; read from the coordinator at most every 2 s)',
          parameters: [nameParameter],
          responses: {
            '200': json('Its place, and the line', {
              type: 'object',
              properties: {
                place: {
                  type: ['integer', 'null'],
                  description: 'Among the builds waiting for a slot, 1 is the next; null when not waiting',
                },
                waiting: { type: 'integer' },
                initializing: { type: 'integer', description: 'Builds holding a slot' },
                max_initializing: { type: 'integer' },
              },
            }),
            '400': error('Not a build name'),
            '503': error('Temporal unreachable'),
          },
        },
      },
      '/builds/{name}/init-log': {
        get: {
          summary: "The init job's log, kept after a failure",
          parameters: [nameParameter],
          responses: { '200': logResponse, '404': error('No log') },
        },
      },
      '/builds/{name}/log': {
        get: {
          summary: "The running build's log",
          parameters: [nameParameter],
          responses: { '200': logResponse, '404': error('No log') },
        },
      },
      '/builds/{name}/start': { post: action('Start the build (initializing it again if it failed)') },
      '/builds/{name}/stop': { post: action('Stop the build') },
      '/builds/{name}/reset': { post: action('Redeploy and initialize again') },
      '/build-events': {
        get: {
          summary: 'Server-Sent Events: the matching builds, then upd/del events',
          parameters: [
            ...filterParameters,
            { name: 'build_name', in: 'query', required: false, schema: { type: 'string' } },
            {
              name: 'changes_only',
              in: 'query',
              required: false,
              description:
                'true: no matching builds first, only the changes from now on, every deletion included (not in runboat)',
              schema: { type: 'string', enum: ['true', 'false'] },
            },
          ],
          responses: { '200': { description: 'text/event-stream of {event, build}' } },
        },
      },
      '/openapi.json': {
        get: { summary: 'This document', responses: { '200': { description: 'OpenAPI 3.1' } } },
      },
    },
  };
}
