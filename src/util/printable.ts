/** Escapes control characters (NUL included) so untrusted text is safe in one log or error line. */
export function printable(text: string): string {
  return text.replace(
    /[\0-\x1f\x7f]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`,
  );
}
