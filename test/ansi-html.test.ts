import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ansiToHtmlContent, ansiToHtmlPage, LOG_PAGE_CSP } from '../api/ansi-html';

// Build logs served as HTML, in the shape of Python's ansi2html that runboat uses.

const ESC = '\x1b';

describe('ansiToHtmlContent', () => {
  it('leaves plain text as is, escaped', () => {
    expect(ansiToHtmlContent('INFO odoo: ready\n')).toBe('INFO odoo: ready\n');
    expect(ansiToHtmlContent(`<script>alert("x")</script> & 'y'`)).toBe(
      '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;',
    );
  });

  it('turns SGR colours and attributes into ansi2html classes', () => {
    // Odoo's coloured log level: bold green on default, then reset.
    expect(ansiToHtmlContent(`${ESC}[1;32m${ESC}[1;49mINFO${ESC}[0m odoo`)).toBe(
      '<span class="ansi1 ansi32">INFO</span> odoo',
    );
    expect(ansiToHtmlContent(`${ESC}[31mred ${ESC}[44mon blue${ESC}[39m default${ESC}[m plain`)).toBe(
      '<span class="ansi31">red </span><span class="ansi31 ansi44">on blue</span>' +
        '<span class="ansi44"> default</span> plain',
    );
    expect(ansiToHtmlContent(`${ESC}[4;3mu${ESC}[24mi${ESC}[23m`)).toBe(
      '<span class="ansi3 ansi4">u</span><span class="ansi3">i</span>',
    );
    expect(ansiToHtmlContent(`${ESC}[38;5;208;48;5;17mx${ESC}[38;2;1;2;3;1my`)).toBe(
      '<span class="ansi38-208 ansi48-17">x</span><span class="ansi1 ansi38-208 ansi48-17">y</span>',
    );
    expect(ansiToHtmlContent(`${ESC}[92mbright${ESC}[0m`)).toBe('<span class="ansi92">bright</span>');
  });

  it('escapes text inside spans, and drops other escape sequences and controls', () => {
    expect(ansiToHtmlContent(`${ESC}[31m<b>${ESC}[0m`)).toBe('<span class="ansi31">&lt;b&gt;</span>');
    expect(
      ansiToHtmlContent(`a${ESC}[2K${ESC}[1Gb${ESC}]0;title\x07c${ESC}]8;;https://x\x1b\\d\x00e${ESC}`),
    ).toBe('abcde');
    // A class name is never taken from the log: unknown codes add nothing.
    expect(ansiToHtmlContent(`${ESC}[31;"onload=x;999mz`)).not.toContain('onload');
  });
});

describe('ansiToHtmlPage', () => {
  it('is a whole page with the stylesheet its CSP allows, and nothing else', () => {
    const page = ansiToHtmlPage(`${ESC}[31mboom${ESC}[0m`);
    expect(page).toMatch(/^<!DOCTYPE html>/);
    expect(page).toContain('<pre class="ansi2html-content">\n<span class="ansi31">boom</span>\n</pre>');
    const style = /<style>([\s\S]*)<\/style>/.exec(page)?.[1] ?? '';
    expect(style).toContain('.ansi31 { color: #aa0000; }');
    expect(style).toContain('.ansi38-208 {');
    const hash = createHash('sha256').update(style).digest('base64');
    expect(LOG_PAGE_CSP).toContain(`style-src 'sha256-${hash}'`);
    expect(LOG_PAGE_CSP).toContain("default-src 'none'");
    expect(page).not.toMatch(/<script|style="/);
  });
});
