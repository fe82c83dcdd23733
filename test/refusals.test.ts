import { ApiException } from '@kubernetes/client-node';
import { ApplicationFailure } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { nonRetryableIfPermanent } from '../activities';
import { KubefilesError } from '../activities/kubefiles';

// Which failures of an apply end a build (failed, with its reason) and which are retried: a
// restarting kube-apiserver refuses valid objects for a few seconds, which must not fail it.

const refusal = (code: number) =>
  new ApiException(code, 'refused', { message: 'failed to allocate IP: allocator not ready' }, {});

describe('nonRetryableIfPermanent', () => {
  it('retries a refusal at first, and gives up once Kubernetes keeps refusing', () => {
    for (const code of [400, 422]) {
      const first = nonRetryableIfPermanent(refusal(code), 1) as ApplicationFailure;
      expect(first).toBeInstanceOf(ApplicationFailure);
      expect(first.nonRetryable).toBe(false);
      expect(first.message).toContain('allocator not ready');
      const third = nonRetryableIfPermanent(refusal(code), 3) as ApplicationFailure;
      expect(third.nonRetryable).toBe(true);
      expect(third.type).toBe('KubefilesError');
    }
  });

  it('ends the build at once for kubefiles that cannot render', () => {
    const failure = nonRetryableIfPermanent(new KubefilesError('no kustomization'), 1) as ApplicationFailure;
    expect(failure.nonRetryable).toBe(true);
  });

  it('leaves other errors to the retry policy', () => {
    const unavailable = new ApiException(503, 'unavailable', {}, {});
    expect(nonRetryableIfPermanent(unavailable, 1)).toBe(unavailable);
  });
});
