// CSV as RFC 4180 writes it, read leniently where files in the wild differ: records end with
// CRLF, LF or CR; a field in double quotes may hold the delimiter, line breaks (kept as written)
// and "" for one quote; a leading UTF-8 BOM is dropped; blank lines are skipped; a quote inside
// an unquoted field is kept as a character. A record with text after a closing quote, or a quote
// left open at the end of the file, is reported with the line it starts on and skipped.

export interface CsvRecord {
  /** 1-based line the record starts on. */
  line: number;
  fields: string[];
}

export interface CsvError {
  line: number;
  reason: string;
}

export function parseCsv(text: string, delimiter = ','): { records: CsvRecord[]; errors: CsvError[] } {
  if (delimiter.length !== 1 || delimiter === '"' || delimiter === '\n' || delimiter === '\r') throw new Error(`unusable CSV delimiter ${JSON.stringify(delimiter)}`);
  const records: CsvRecord[] = [];
  const errors: CsvError[] = [];
  const n = text.length;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let line = 1;

  /** Index after the line break at i (CRLF, LF or CR), counting the line. */
  const skipBreak = (at: number): number => {
    line++;
    return text[at] === '\r' && text[at + 1] === '\n' ? at + 2 : at + 1;
  };
  /** Skips the rest of a broken record up to and past its line break. */
  const skipRecord = (at: number): number => {
    while (at < n && text[at] !== '\n' && text[at] !== '\r') at++;
    return at < n ? skipBreak(at) : n;
  };

  while (i < n) {
    const start = line;
    const fields: string[] = [];
    let broken: string | undefined;
    for (;;) {
      let field = '';
      if (text[i] === '"') {
        let j = i + 1;
        let from = j;
        for (;;) {
          if (j >= n) {
            broken = 'a quoted field is not closed before the end of the file';
            break;
          }
          const c = text[j];
          if (c === '"') {
            if (text[j + 1] === '"') {
              field += text.slice(from, j + 1);
              j += 2;
              from = j;
              continue;
            }
            field += text.slice(from, j);
            break;
          }
          if (c === '\n' || (c === '\r' && text[j + 1] !== '\n')) line++;
          j++;
        }
        i = j + 1;
        if (broken) break;
        if (i < n && text[i] !== delimiter && text[i] !== '\n' && text[i] !== '\r') {
          broken = `text after the closing quote of field ${fields.length + 1}`;
          break;
        }
      } else {
        let j = i;
        while (j < n && text[j] !== delimiter && text[j] !== '\n' && text[j] !== '\r') j++;
        field = text.slice(i, j);
        i = j;
      }
      fields.push(field);
      if (i < n && text[i] === delimiter) {
        i++;
        continue;
      }
      if (i < n) i = skipBreak(i);
      break;
    }
    if (broken) {
      errors.push({ line: start, reason: broken });
      if (i < n) i = skipRecord(i);
      continue;
    }
    if (fields.length === 1 && fields[0] === '') continue;
    records.push({ line: start, fields });
  }
  return { records, errors };
}
