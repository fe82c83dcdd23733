import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  {
    // The two type-aware rules that catch what tsc does not: a promise nobody awaits (its
    // rejection is lost, or crashes the process) and a promise where a void callback is
    // expected (an event listener whose failure nobody sees). Not all of recommendedTypeChecked:
    // its no-unsafe-* rules mostly flag the SDKs' `any`, and each type-aware rule costs time.
    files: ['**/*.ts', '**/*.mts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
    },
  },
  {
    // Workflow code is replayed deterministically: it must not reach Node, the network or
    // anything that differs between a run and its replay. The workflow bundler refuses Node
    // modules only when a worker starts; lint says it at the line.
    files: ['workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: [
                'node:*',
                'assert',
                'buffer',
                'child_process',
                'crypto',
                'dns',
                'events',
                'fs',
                'fs/*',
                'http',
                'https',
                'net',
                'os',
                'path',
                'process',
                'stream',
                'timers',
                'timers/*',
                'tls',
                'url',
                'util',
                'worker_threads',
                'zlib',
              ],
              message: 'Workflows must stay deterministic: no Node built-ins (use an activity).',
            },
            {
              group: ['../common/kubernetes', '../common/kube-keep-alive', '../common/github'],
              allowTypeImports: true,
              message: 'Workflows reach Kubernetes and GitHub through activities only.',
            },
            {
              group: ['../activities', '../activities/*'],
              allowTypeImports: true,
              message: 'Import activities as types only (proxyActivities).',
            },
            {
              group: ['@temporalio/activity', '@temporalio/client', '@temporalio/worker'],
              message: 'Workflows import only @temporalio/workflow and @temporalio/common.',
            },
          ],
        },
      ],
      'no-restricted-globals': [
        'error',
        ...[
          'process',
          'Buffer',
          'require',
          '__dirname',
          '__filename',
          'setImmediate',
          'fetch',
          'WeakRef',
          'FinalizationRegistry',
        ].map((name) => ({
          name,
          message: 'Workflows must stay deterministic: no Node or network globals.',
        })),
      ],
      'no-restricted-properties': [
        'error',
        {
          object: 'crypto',
          property: 'randomUUID',
          message: 'Use uuid4() from @temporalio/workflow: it is replayed.',
        },
        {
          object: 'performance',
          property: 'now',
          message: 'Use Date.now(): the workflow sandbox makes it replay-safe.',
        },
      ],
    },
  },
);
