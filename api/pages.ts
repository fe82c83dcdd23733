import type { Response } from 'express';
import type { Config } from '../common/config';

// The Web UI's HTML frame and headers: the one place a page's markup and Content-Security-Policy
// are made. Nothing is loaded from a CDN; every page sends a strict Content-Security-Policy.

/**
 * The pages' headers. RUNBOAT_ADDITIONAL_FOOTER_HTML is the operator's own HTML: it may show
 * images from elsewhere (runboat's footer shows logos), so https images are allowed when it is
 * set; scripts and inline styles stay refused, footer or not.
 */
export function securityHeaders(config: Config): Record<string, string> {
  const images = config.additionalFooterHtml ? "'self' data: https:" : "'self' data:";
  return {
    'content-security-policy':
      `default-src 'none'; script-src 'self'; style-src 'self'; img-src ${images}; connect-src 'self'; ` +
      "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'same-origin',
  };
}

/** Escapes text for HTML element content and double-quoted attribute values. */
export function escapeHtml(value: unknown): string {
  return String(value).replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string,
  );
}

/**
 * A page in the UI's frame; `body` must already be escaped. `footerHtml` is
 * RUNBOAT_ADDITIONAL_FOOTER_HTML: configured by the operator, trusted, inserted as is.
 */
export function page(title: string, body: string, script: string | undefined, footerHtml: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} · runboat</title>
<link rel="icon" href="/ui/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/ui/style.css">
${script ? `<script type="module" src="/ui/${script}"></script>` : ''}
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top"><a class="brand" href="/">runboat</a><nav aria-label="Main"><a href="/">Repositories</a> <a href="/builds">All builds</a> <a href="/status">Status</a></nav></header>
<main id="main">
${body}
</main>
${footerHtml ? `<footer class="site-footer">\n${footerHtml}\n</footer>\n` : ''}</body>
</html>
`;
}

export function sendPage(
  config: Config,
  response: Response,
  status: number,
  title: string,
  body: string,
  script?: string,
): void {
  response
    .status(status)
    .type('html')
    .set('cache-control', 'no-store')
    .send(page(title, body, script, config.additionalFooterHtml));
}
