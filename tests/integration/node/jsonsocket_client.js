'use strict';
// Calls a shoal node through the unmodified json-socket npm package, one
// message at a time: sum, echo with non-ASCII text, an unknown app and a
// describe. Usage: node jsonsocket_client.js URL (tcp://HOST:PORT or
// unix:///PATH). Exits 0 when every answer is right, 1 otherwise.
const assert = require('assert');
const net = require('net');
const JsonSocket = require('json-socket');

const url = process.argv[2];
const TIMEOUT_MS = 10000;

function fail(why) {
    process.stderr.write('jsonsocket_client: ' + why + '\n');
    process.exit(1);
}

if (!url) {
    fail('usage: node jsonsocket_client.js URL');
}

// Two-, three- and four-byte UTF-8 sequences: json-socket's length prefix
// counts bytes, so these check that shoal counts the same way.
const text = 'h\u00e9llo w\u00f6rld \u2713 \u65e5\u672c\u8a9e \ud83d\udc1f';
const nested = {list: ['\u00fc', {k: '\u03a9'}], n: -1.5, ok: true, none: null};

const steps = [
    {
        send: {type: 'call', id: 1, app: 'sum', action: 'sum', args: [1, 2, 3.5]},
        check: (m) => assert.strictEqual(m.result, 6.5),
    },
    {
        send: {type: 'call', id: 2, app: 'echo', action: 'echo', args: text},
        check: (m) => assert.strictEqual(m.result, text),
    },
    {
        send: {type: 'call', id: 3, app: 'echo', action: 'echo', args: nested},
        check: (m) => assert.deepStrictEqual(m.result, nested),
    },
    {
        send: {type: 'call', id: 4, app: 'nope', action: 'x'},
        check: (m) => {
            assert.strictEqual(m.result, undefined);
            assert.strictEqual(m.error.code, 'ENOAPP');
            assert.strictEqual(typeof m.error.message, 'string');
        },
    },
    {
        send: {type: 'tell', app: 'echo', msg: text},
        check: null, // no answer: the next call proves it arrived
    },
    {
        send: {type: 'call', id: 5, app: 'echo', action: 'count'},
        check: (m) => assert.strictEqual(m.result, 1),
    },
    {
        send: {type: 'describe', id: 6},
        check: (m) => {
            assert.strictEqual(typeof m.result.name, 'string');
            assert.ok(Array.isArray(m.result.applications));
        },
    },
];

const socket = new JsonSocket(new net.Socket());
let step = 0;

const timer = setTimeout(() => fail('no answer to step ' + step + ' in ' +
                                    TIMEOUT_MS + ' ms'),
                         TIMEOUT_MS);

// json-socket cuts frames by characters where its prefix counts bytes, so
// non-ASCII frames arriving back to back confuse it: send the next message
// only after the previous answer.
function next() {
    while (step < steps.length && steps[step].check === null) {
        socket.sendMessage(steps[step].send);
        step++;
    }
    if (step === steps.length) {
        clearTimeout(timer);
        socket.end();
        return;
    }
    socket.sendMessage(steps[step].send);
}

socket.on('message', (m) => {
    const s = steps[step];
    if (!s) {
        fail('unexpected message ' + JSON.stringify(m));
    }
    try {
        assert.strictEqual(m.type, 'reply');
        assert.strictEqual(m.id, s.send.id);
        s.check(m);
    } catch (e) {
        fail('step ' + step + ': ' + e.message + '\ngot ' + JSON.stringify(m));
    }
    step++;
    next();
});
socket.on('error', (e) => fail(e.message));
socket.on('close', () => {
    if (step !== steps.length) {
        fail('the node closed the connection at step ' + step);
    }
    process.exit(0);
});
socket.on('connect', next);

if (url.startsWith('unix://')) {
    socket.connect(url.slice('unix://'.length));
} else if (url.startsWith('tcp://')) {
    const hostPort = url.slice('tcp://'.length);
    const colon = hostPort.lastIndexOf(':');
    socket.connect(Number(hostPort.slice(colon + 1)),
                   hostPort.slice(0, colon));
} else {
    fail('not a tcp:// or unix:// URL: ' + url);
}
