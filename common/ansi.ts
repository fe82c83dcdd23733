// Terminal output (an init Job's log) as it comes: colours, cursor moves, the odd control byte.

// CSI (ESC [ params intermediates final), OSC (ESC ] … BEL or ESC \), or a two-character escape.
// eslint-disable-next-line no-control-regex
export const ANSI_ESCAPES = /\x1b(?:\[([0-?]*)[ -/]*([@-~])|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_]|$)/g;
// Other control characters than tab, line feed and carriage return carry nothing readable.
// eslint-disable-next-line no-control-regex
export const CONTROL_CHARACTERS = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/g;

/** The log's text without its escapes and control characters. */
export function plainText(log: string): string {
  return log.replace(ANSI_ESCAPES, '').replace(CONTROL_CHARACTERS, '');
}

/**
 * The end of a log as plain text: its last `maxLines` lines, and of those its last `maxChars`
 * characters; `cut` when that left some of it out.
 */
export function logTail(log: string, maxLines: number, maxChars: number): { text: string; cut: boolean } {
  const lines = plainText(log).trimEnd().split('\n');
  const text = lines.slice(-maxLines).join('\n');
  return text.length > maxChars
    ? { text: text.slice(-maxChars), cut: true }
    : { text, cut: lines.length > maxLines };
}
