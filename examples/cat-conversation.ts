/**
 * The duplex session: talk to a running cat — send, receive, send again, close its
 * stdin, read its exit (lua-resty-exec's `resty.exec.socket` example).
 *
 *   node --import tsx examples/cat-conversation.ts     (PROCSOCK_SOCKET=path to use a daemon)
 */
import { connect } from 'procsock';

const session = await connect(process.env.PROCSOCK_SOCKET || 'local', { timeout: 60_000 });
try {
  session.sendArgs(['cat']); // starts the program

  await session.send('hello there');
  let received = await session.receive();
  if (received.type === 'stdout') console.log(`Received stdout data: ${received.data}`);
  // Received stdout data: hello there

  await session.send('hey this cat process is still running');
  received = await session.receive();
  if (received.type === 'stdout') console.log(`Received stdout data: ${received.data}`);
  // Received stdout data: hey this cat process is still running

  session.sendClose(); // closes cat's stdin
  received = await session.receive();
  if (received.type === 'exit') console.log(`Received exit code: ${received.exitCode}`);
  // Received exit code: 0

  received = await session.receive();
  console.log(received.type); // closed
} finally {
  await session.close();
}
