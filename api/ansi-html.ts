import { createHash } from 'node:crypto';
import { ANSI_ESCAPES, CONTROL_CHARACTERS } from '../common/ansi';

// Build logs as runboat serves them: an HTML page in the shape of Python's ansi2html (which
// runboat's `/init-log` and `/log` use): the text in `<pre class="ansi2html-content">`, SGR
// colours and attributes as `<span class="ansi1 ansi31">`, a stylesheet of those classes.
// A log is untrusted text: every character of it is escaped; every other escape sequence
// (cursor moves, titles, hyperlinks) is dropped. Written here rather than taken from npm
// because the libraries there emit inline `style` attributes, which the strict CSP refuses.

/** ansi2html's default ("ansi2html") scheme: black, red, green, yellow, blue, magenta, cyan, white, then bright. */
const PALETTE = [
  '#000316',
  '#aa0000',
  '#00aa00',
  '#aa5500',
  '#0000aa',
  '#e850a8',
  '#00aaaa',
  '#f5f1de',
  '#7f7f7f',
  '#ff0000',
  '#00ff00',
  '#ffff00',
  '#5c5cff',
  '#ff00ff',
  '#00ffff',
  '#ffffff',
];

/** The xterm 256-colour palette: the 16 above, a 6×6×6 cube, 24 greys. */
function color256(index: number): string {
  if (index < 16) return PALETTE[index];
  const hex = (value: number) => value.toString(16).padStart(2, '0');
  if (index >= 232) {
    const grey = 8 + (index - 232) * 10;
    return `#${hex(grey)}${hex(grey)}${hex(grey)}`;
  }
  const cube = index - 16;
  const level = (value: number) => (value === 0 ? 0 : 55 + value * 40);
  return `#${hex(level(Math.floor(cube / 36)))}${hex(level(Math.floor(cube / 6) % 6))}${hex(level(cube % 6))}`;
}

function stylesheet(): string {
  const rules = [
    '.ansi2html-content { display: inline; white-space: pre-wrap; word-wrap: break-word; }',
    '.body_foreground { color: #AAAAAA; }',
    '.body_background { background-color: #000000; }',
    '.ansi1 { font-weight: bold; }',
    '.ansi2 { font-weight: lighter; }',
    '.ansi3 { font-style: italic; }',
    '.ansi4 { text-decoration: underline; }',
    '.ansi5 { text-decoration: blink; }',
    '.ansi6 { text-decoration: blink; }',
    '.ansi7 { color: #000000; background-color: #AAAAAA; }',
    '.ansi8 { visibility: hidden; }',
    '.ansi9 { text-decoration: line-through; }',
  ];
  for (let i = 0; i < 8; i++) {
    rules.push(
      `.ansi${30 + i} { color: ${PALETTE[i]}; }`,
      `.ansi${40 + i} { background-color: ${PALETTE[i]}; }`,
    );
    rules.push(
      `.ansi${90 + i} { color: ${PALETTE[8 + i]}; }`,
      `.ansi${100 + i} { background-color: ${PALETTE[8 + i]}; }`,
    );
  }
  for (let i = 0; i < 256; i++) {
    rules.push(
      `.ansi38-${i} { color: ${color256(i)}; }`,
      `.ansi48-${i} { background-color: ${color256(i)}; }`,
    );
  }
  return rules.join('\n');
}

const STYLESHEET = stylesheet();

/** The page's Content-Security-Policy: no script at all, and only this exact stylesheet. */
export const LOG_PAGE_CSP =
  `default-src 'none'; style-src 'sha256-${createHash('sha256').update(STYLESHEET).digest('base64')}'; ` +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** Escapes text for HTML element content and attribute values. */
function escape(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string,
  );
}

interface SgrState {
  attributes: Set<number>;
  fg: string | undefined;
  bg: string | undefined;
}

/** Applies one SGR sequence's parameters (`1;31`, `38;5;208`, ``) to the state. */
function applySgr(state: SgrState, params: string): void {
  const codes = params === '' ? [0] : params.split(/[;:]/).map((code) => (code === '' ? 0 : Number(code)));
  for (let i = 0; i < codes.length; i++) {
    const code = codes[i];
    if (code === 0) {
      state.attributes.clear();
      state.fg = state.bg = undefined;
    } else if (code >= 1 && code <= 9) state.attributes.add(code);
    else if (code === 21 || code === 22) [1, 2].forEach((c) => state.attributes.delete(c));
    else if (code >= 23 && code <= 29) {
      const off: Record<number, number[]> = { 23: [3], 24: [4], 25: [5, 6], 27: [7], 28: [8], 29: [9] };
      (off[code] ?? []).forEach((c) => state.attributes.delete(c));
    } else if ((code >= 30 && code <= 37) || (code >= 90 && code <= 97)) state.fg = `ansi${code}`;
    else if (code === 39) state.fg = undefined;
    else if ((code >= 40 && code <= 47) || (code >= 100 && code <= 107)) state.bg = `ansi${code}`;
    else if (code === 49) state.bg = undefined;
    else if (code === 38 || code === 48) {
      // 38;5;N (256 colours) gets a class; 38;2;R;G;B (true colour) is skipped, as its values are.
      if (codes[i + 1] === 5 && Number.isInteger(codes[i + 2]) && codes[i + 2] >= 0 && codes[i + 2] < 256) {
        const name = `ansi${code}-${codes[i + 2]}`;
        if (code === 38) state.fg = name;
        else state.bg = name;
        i += 2;
      } else if (codes[i + 1] === 2) i += 4;
      else i = codes.length;
    }
  }
}

function classesOf(state: SgrState): string {
  return [...[...state.attributes].sort((a, b) => a - b).map((code) => `ansi${code}`), state.fg, state.bg]
    .filter(Boolean)
    .join(' ');
}

/** The log's text as HTML content: escaped, colours and attributes as classed spans. */
export function ansiToHtmlContent(log: string): string {
  const state: SgrState = { attributes: new Set(), fg: undefined, bg: undefined };
  let html = '';
  let last = 0;
  const emit = (text: string) => {
    const clean = text.replace(CONTROL_CHARACTERS, '');
    if (!clean) return;
    const classes = classesOf(state);
    html += classes ? `<span class="${classes}">${escape(clean)}</span>` : escape(clean);
  };
  for (const match of log.matchAll(ANSI_ESCAPES)) {
    emit(log.slice(last, match.index));
    last = match.index + match[0].length;
    if (match[2] === 'm') applySgr(state, match[1] ?? '');
  }
  emit(log.slice(last));
  return html;
}

/** A whole HTML page of the log, as runboat's `Ansi2HTMLConverter().convert(log)` gives. */
export function ansiToHtmlPage(log: string, title = ''): string {
  return `<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>${escape(title)}</title>
<style>${STYLESHEET}</style>
</head>
<body class="body_foreground body_background">
<pre class="ansi2html-content">
${ansiToHtmlContent(log)}
</pre>
</body>
</html>
`;
}
