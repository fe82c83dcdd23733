import { generateKeyPairSync } from 'node:crypto';

/** A new GitHub App private key, PEM, as GitHub generates them (RSA, PKCS#1). */
export function newGitHubAppKey(): string {
  return generateKeyPairSync('rsa', { modulusLength: 2048 })
    .privateKey.export({ type: 'pkcs1', format: 'pem' })
    .toString();
}
