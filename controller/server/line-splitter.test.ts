import t from 'tap';
import { LineSplitter, LineTooLongError } from './line-splitter.ts';

t.test('lines across chunks, several per chunk, CRLF tolerated', async (t) => {
  const s = new LineSplitter(1024);
  t.strictSame(s.push(Buffer.from('{"a":')), []);
  t.equal(s.pending, 5);
  t.strictSame(s.push(Buffer.from('1}\n{"b":2}\r\n{"c"')), ['{"a":1}', '{"b":2}']);
  t.strictSame(s.push(Buffer.from(':3}\n\n')), ['{"c":3}', '']);
  t.equal(s.pending, 0);
});

t.test('a multi-byte character split between chunks survives', async (t) => {
  const s = new LineSplitter(1024);
  const bytes = Buffer.from('{"reason":"żółw"}\n');
  const cut = bytes.indexOf(0xc5) + 1; // inside the first two-byte character
  t.strictSame([...s.push(bytes.subarray(0, cut)), ...s.push(bytes.subarray(cut))], ['{"reason":"żółw"}']);
});

t.test('a line longer than the cap is refused, and the splitter starts over', async (t) => {
  const s = new LineSplitter(8);
  t.throws(() => s.push(Buffer.from('0123456789')), LineTooLongError);
  t.throws(() => {
    s.push(Buffer.from('01234'));
    s.push(Buffer.from('56789\n'));
  }, LineTooLongError, 'also when the line grows over several chunks');
  t.strictSame(s.push(Buffer.from('ok\n')), ['ok']);
  t.strictSame(new LineSplitter(8).push(Buffer.from('12345678\n')), ['12345678'], 'exactly the cap is fine');
});
