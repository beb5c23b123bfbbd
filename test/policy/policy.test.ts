import { strict as assert } from 'node:assert';
import { chmodSync, copyFileSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { buildEnvironment } from '../../src/policy/environment.js';
import { resolveIdentity } from '../../src/policy/identity.js';
import { isRefusal, Policy, PolicyError } from '../../src/policy/policy.js';
import { checkProgram, ProgramAllowList } from '../../src/policy/program.js';
import { tempDir } from '../helpers/process.js';

describe('program allow-list', () => {
  const tmp = tempDir();
  let allowedDir: string;
  let outsideDir: string;
  before(() => {
    allowedDir = tmp.path('allowed');
    outsideDir = tmp.path('outside');
    mkdirSync(allowedDir);
    mkdirSync(outsideDir);
    for (const dir of [allowedDir, outsideDir]) {
      writeFileSync(`${dir}/tool`, '#!/bin/sh\necho tool\n');
      chmodSync(`${dir}/tool`, 0o755);
    }
    copyFileSync('/bin/true', `${outsideDir}/evil`);
    chmodSync(`${outsideDir}/evil`, 0o755);
    // A symlink inside the allowed directory that points out of it.
    symlinkSync(`${outsideDir}/evil`, `${allowedDir}/escape`);
    // A symlink inside the allowed directory that points to an allowed file.
    symlinkSync(`${allowedDir}/tool`, `${allowedDir}/alias`);
  });
  after(() => tmp.cleanup());

  const check = (name: string, allow: string[], path = '/usr/bin:/bin', cwd = '/') =>
    checkProgram(name, new ProgramAllowList(allow), path, cwd);

  test('an exact path allows that file, found through PATH, and nothing else', () => {
    const allow = ['/usr/bin/uname'];
    assert.deepEqual(check('uname', allow), { allowed: true, path: '/usr/bin/uname' });
    assert.deepEqual(check('/usr/bin/uname', allow), { allowed: true, path: '/usr/bin/uname' });
    const refused = check('id', allow);
    assert.equal(refused.allowed, false);
    assert.equal(!refused.allowed && refused.exitCode, 126);
  });

  test('a directory allows what lies below it, by real path', () => {
    assert.equal(check(`${allowedDir}/tool`, [allowedDir]).allowed, true);
    assert.deepEqual(check(`${allowedDir}/alias`, [allowedDir]), {
      allowed: true,
      path: `${allowedDir}/tool`,
    });
  });

  test('a symlink in an allowed directory that points out is refused', () => {
    const decision = check(`${allowedDir}/escape`, [allowedDir]);
    assert.equal(decision.allowed, false);
  });

  test('../ in the name does not escape the allowed directory', () => {
    assert.equal(check(`${allowedDir}/../outside/evil`, [allowedDir]).allowed, false);
    assert.equal(check('../outside/evil', [allowedDir], '/usr/bin', allowedDir).allowed, false);
  });

  test('a relative name is resolved against the working directory, then checked', () => {
    assert.equal(check('./tool', [allowedDir], '/usr/bin', allowedDir).allowed, true);
    assert.equal(check('./tool', [allowedDir], '/usr/bin', outsideDir).allowed, false);
  });

  test('PATH games: relative PATH entries are skipped; an earlier PATH dir outside is refused', () => {
    // `.` first in PATH would find ./tool in the cwd; skipped, so `tool` is not found at all.
    const viaDot = check('tool', [allowedDir], `.:/usr/bin`, outsideDir);
    assert.deepEqual(viaDot, { allowed: false, reason: 'command not found', exitCode: 127 });
    // An attacker-controlled dir before the allowed one: the first match is checked, and refused.
    const shadowed = check('tool', [allowedDir], `${outsideDir}:${allowedDir}`);
    assert.equal(shadowed.allowed, false);
  });

  test('a NUL byte or an empty name is refused', () => {
    assert.equal(check('uname\0-a', ['/usr/bin/uname']).allowed, false);
    assert.equal(check('', ['/usr/bin']).allowed, false);
  });

  test('entries must be absolute and exist', () => {
    assert.throws(() => new ProgramAllowList(['bin']), /absolute/);
    assert.throws(() => new ProgramAllowList(['/no/such/dir']), /does not exist/);
  });
});

describe('environment', () => {
  const base = { PATH: '/usr/bin', SECRET: 's3cret', LANG: 'C.UTF-8' };
  test('all passes everything (sockexec behaviour), none passes nothing', () => {
    assert.deepEqual(buildEnvironment(base, { pass: 'all', set: {} }), base);
    assert.deepEqual(buildEnvironment(base, { pass: 'none', set: { A: '1' } }), { A: '1' });
  });
  test('a list passes only the listed variables, then set applies', () => {
    assert.deepEqual(buildEnvironment(base, { pass: ['LANG', 'MISSING'], set: { PATH: '/bin' } }), {
      LANG: 'C.UTF-8',
      PATH: '/bin',
    });
  });
  test('a huge environment is passed through unchanged', () => {
    const huge = Object.fromEntries(
      Array.from({ length: 5000 }, (_, i) => [`V${i}`, 'x'.repeat(100)]),
    );
    assert.equal(Object.keys(buildEnvironment(huge, { pass: 'all', set: {} })).length, 5000);
  });
});

describe('identity', () => {
  test('numbers and names resolve; an unknown name is an error', () => {
    assert.deepEqual(resolveIdentity(1234), { uid: 1234, gid: 1234, account: null });
    assert.deepEqual(resolveIdentity('1234', '99'), { uid: 1234, gid: 99, account: null });
    const root = { name: 'root', uid: 0, gid: 0, home: '/root' };
    assert.deepEqual(resolveIdentity('root'), { uid: 0, gid: 0, account: root });
    assert.deepEqual(resolveIdentity(0, 'root'), { uid: 0, gid: 0, account: root });
    assert.throws(() => resolveIdentity('no-such-user-procsock'), /no user named/);
    assert.throws(() => resolveIdentity('root', 'no-such-group-procsock'), /no group named/);
  });

  test('ids out of range, empty names and dashed names are refused at start, not at each run', () => {
    // (uid_t)-1 is setresuid's "unchanged"; beyond it uid_t wraps. Both started the daemon before,
    // and every run then failed (126) — or, in a spawn that passed -1 on, kept the daemon's uid.
    assert.throws(() => resolveIdentity(4294967295), /user id 4294967295 is out of range/);
    assert.throws(() => resolveIdentity('99999999999'), /user id 99999999999 is out of range/);
    assert.throws(
      () => resolveIdentity('root', '4294967295'),
      /group id 4294967295 is out of range/,
    );
    assert.deepEqual(resolveIdentity(4294967294).uid, 4294967294);
    assert.throws(() => resolveIdentity(''), /the user is empty/);
    assert.throws(() => resolveIdentity('root', ''), /the group is empty/);
    // A name is a key, never an option of getent's: --help printed its usage, taken for an entry
    // (uid NaN), and -1 or -s failed with getent's own complaint.
    assert.throws(() => resolveIdentity('--help'), /no user named "--help"/);
    assert.throws(() => resolveIdentity('-s'), /no user named "-s"/);
    assert.throws(() => resolveIdentity('root', '--help'), /no group named "--help"/);
  });
});

describe('Policy', () => {
  test('envPass names must be variable names, as clientEnv names are', () => {
    // Accepted before (and matched nothing), while clientEnv refused the same names.
    assert.throws(
      () => new Policy({ envPass: ['bogus='], allowRoot: true }, true),
      /envPass: "bogus=" is not a variable name/,
    );
    assert.throws(
      () => new Policy({ envPass: ['A B'], allowRoot: true }, true),
      /envPass: "A B" is not a variable name/,
    );
    assert.throws(
      () => new Policy({ clientEnv: ['A B'], allowRoot: true }, true),
      /clientEnv: "A B" is not a variable name/,
    );
    assert.doesNotThrow(() => new Policy({ envPass: ['PATH', 'HOME'], allowRoot: true }, true));
  });

  test('root without a user is refused unless allowRoot', () => {
    assert.throws(() => new Policy({}, true), PolicyError);
    assert.throws(() => new Policy({ user: 0 }, true), /refusing to run programs as root/);
    assert.doesNotThrow(() => new Policy({ allowRoot: true }, true));
    assert.doesNotThrow(() => new Policy({ user: 65534 }, true));
  });

  test('no options is the open policy: argv runs as given', () => {
    const policy = new Policy({}, false);
    assert.equal(policy.isOpen, true);
    const plan = policy.plan(['uname', '-a']);
    assert.ok(!isRefusal(plan));
    assert.equal(plan.file, undefined);
    assert.equal(plan.env, undefined);
  });

  test('a refused program gets a message naming the policy and exit 126', () => {
    const policy = new Policy({ allow: ['/usr/bin/uname'] }, false);
    const plan = policy.plan(['/bin/sh', '-c', 'id']);
    assert.ok(isRefusal(plan));
    assert.equal(plan.exitCode, 126);
    assert.equal(
      plan.message,
      'procsock: /bin/sh: not allowed by the daemon policy (its operator can allow it: procsock serve --allow PATH)\n',
    );
  });

  test('a control character in argv[0] is escaped in the message', () => {
    const plan = new Policy({ allow: ['/usr/bin'] }, false).plan(['a\nb\0']);
    assert.ok(isRefusal(plan));
    assert.equal(plan.message, 'procsock: a\\x0ab\\x00: invalid program name\n');
  });

  test('invalid limits are rejected at start-up', () => {
    assert.throws(() => new Policy({ maxOutputBytes: -1 }, false), /maxOutputBytes/);
    assert.throws(() => new Policy({ rlimits: { cpuSeconds: 1.5 } }, false), /cpuSeconds/);
  });
});
