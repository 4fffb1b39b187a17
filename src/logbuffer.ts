/**
 * Pure logic of the live log view: which bytes to read next and how much
 * text to keep, so a log of hundreds of MB is followed without re-downloading
 * it and with a bounded DOM (one text node of at most `maxChars`).
 */
import type { ILogChunk } from './tokens';

/** What the log view holds of one job's log. */
export interface ILogState {
  /** Byte offset of the next read. */
  offset: number;
  /** The kept tail of the log. */
  text: string;
  /** Whether earlier output was dropped (skipped or trimmed). */
  truncated: boolean;
  /** The file's size at the last read. */
  size: number;
  /** Whether we have read up to the size seen at the last read. */
  eof: boolean;
  /** No more bytes will ever come: stop polling. */
  complete: boolean;
  /** Whether anything was read yet. */
  started: boolean;
  /** After a skip the next bytes start mid-line: drop up to the first newline. */
  dropPartial: boolean;
}

export function emptyLogState(): ILogState {
  return {
    offset: 0,
    text: '',
    truncated: false,
    size: 0,
    eof: false,
    complete: false,
    started: false,
    dropPartial: false
  };
}

/**
 * Keep at most `maxChars` characters and `maxLines` lines of `text`, cutting
 * at a line start. Returns the kept text and whether anything was dropped.
 */
export function trimTail(
  text: string,
  maxChars: number,
  maxLines: number
): { text: string; trimmed: boolean } {
  let start = 0;
  let trimmed = false;
  if (text.length > maxChars) {
    start = text.length - maxChars;
    const newline = text.indexOf('\n', start);
    start = newline >= 0 && newline < text.length - 1 ? newline + 1 : start;
    trimmed = true;
  }
  // Count lines from the end, stopping as soon as the limit is reached.
  let lines = 0;
  for (let i = text.length - 2; i >= start; i--) {
    if (text.charCodeAt(i) === 10) {
      lines++;
      if (lines >= maxLines) {
        start = i + 1;
        trimmed = true;
        break;
      }
    }
  }
  return { text: start > 0 ? text.slice(start) : text, trimmed };
}

/**
 * Fold a chunk answered by `GET log?offset=` into the state.
 *
 * When the reader is more than `tailBytes` behind the end of the file (a log
 * opened late, or one growing faster than we read), the bytes in between are
 * skipped: the next read starts `tailBytes` before the end, the kept text is
 * cleared and `truncated` set.
 */
export function applyChunk(
  state: ILogState,
  chunk: ILogChunk,
  options: { tailBytes: number; maxChars: number; maxLines: number }
): ILogState {
  const behind = chunk.size - chunk.next_offset;
  if (behind > options.tailBytes) {
    return {
      offset: chunk.size - options.tailBytes,
      text: '',
      truncated: true,
      size: chunk.size,
      eof: false,
      complete: false,
      started: true,
      dropPartial: true
    };
  }
  let content = chunk.content;
  let dropPartial = state.dropPartial;
  if (dropPartial) {
    const newline = content.indexOf('\n');
    if (newline >= 0) {
      content = content.slice(newline + 1);
      dropPartial = false;
    } else {
      content = '';
    }
  }
  const { text, trimmed } = trimTail(
    state.text + content,
    options.maxChars,
    options.maxLines
  );
  return {
    offset: chunk.next_offset,
    text,
    truncated: state.truncated || trimmed,
    size: chunk.size,
    eof: chunk.eof,
    complete: chunk.complete,
    started: true,
    dropPartial
  };
}

/** Whether the reader should read again at once (more bytes are waiting). */
export function shouldReadAgain(state: ILogState): boolean {
  return state.started && !state.complete && !state.eof;
}

/** Whether a scroll position is at (or within `slack` px of) the bottom. */
export function isAtBottom(
  scrollTop: number,
  scrollHeight: number,
  clientHeight: number,
  slack = 24
): boolean {
  return scrollHeight - scrollTop - clientHeight <= slack;
}
