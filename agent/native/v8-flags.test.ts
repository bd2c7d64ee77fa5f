// WEFT_V8_FLAGS: the default flag unless the variable says otherwise, and the flag really reaches V8.
import { spawnSync } from 'node:child_process';
import t from 'tap';
import { DEFAULT_V8_FLAGS, v8FlagsFrom } from './v8-flags.ts';

t.test('the default, none, or the flags given', async (t) => {
  t.same(v8FlagsFrom({}), [DEFAULT_V8_FLAGS]);
  t.same(v8FlagsFrom({ WEFT_V8_FLAGS: '' }), []);
  t.same(v8FlagsFrom({ WEFT_V8_FLAGS: '  --a   --b=1 ' }), ['--a', '--b=1']);
});

// V8 keeps no public record of its flags; %-natives are a flag too. What can be seen from outside:
// an invalid flag is reported on stderr by V8 when it is set, and only when it is set.
t.test('tuneV8 hands the flags to V8, once', async (t) => {
  const run = (value: string | undefined) => {
    const env = { ...process.env };
    if (value === undefined) delete env.WEFT_V8_FLAGS;
    else env.WEFT_V8_FLAGS = value;
    const code = `const { tuneV8 } = await import(${JSON.stringify(new URL('./v8-flags.ts', import.meta.url).href)}); console.log(JSON.stringify([tuneV8(), tuneV8({ WEFT_V8_FLAGS: '--other' })]));`;
    return spawnSync(process.execPath, ['--input-type=module', '-e', code], { env, encoding: 'utf8' });
  };
  const bogus = run('--no-such-flag-for-weft');
  t.match(bogus.stderr, /no-such-flag-for-weft/, 'V8 saw the flag');
  t.same(JSON.parse(bogus.stdout), [['--no-such-flag-for-weft'], ['--no-such-flag-for-weft']], 'applied once per process');
  const none = run('');
  t.notMatch(none.stderr, /flag/i);
  t.same(JSON.parse(none.stdout), [[], []]);
});
