#!/usr/bin/env node
// An LwM2M client nobody here wrote: Telefonica's lwm2m-node-lib (npm), driven by this glue.
//   node lwm2m_node_client.js coap://HOST:PORT ENDPOINT
// It creates a Device object (3/0), an IPSO temperature (3303/0) and a vendor object IoT
// Bridge has no definition for (32769/0), registers, and prints "registered" on stdout.
// Each stdin line "temperature VALUE" changes 3303/0/5700 (observers are notified);
// an Execute of 32769/0/2 counts up 32769/0/3 and prints "executed /32769/0/2 ARGS",
// an Execute of any other resource is refused with 4.05 (through the library's handler);
// stdin closing de-registers and exits. The library is found through NODE_PATH (scripts/setup
// installs it into .cache/npm/node_modules); LWM2M_NODE_LOG=DEBUG shows its log.
'use strict';

const readline = require('readline');
const client = require('lwm2m-node-lib/lib/lwm2m-client');

require('logops').setLevel(process.env.LWM2M_NODE_LOG || 'FATAL');

const [serverUri, endpoint] = process.argv.slice(2);
if (!serverUri || !endpoint) {
  console.error('usage: lwm2m_node_client.js coap://HOST:PORT ENDPOINT');
  process.exit(2);
}
const server = new URL(serverUri.replace(/^coap:/, 'http:'));

client.init({
  client: {
    lifetime: '300',
    version: '1.0',
    logLevel: process.env.LWM2M_NODE_LOG || 'FATAL',
    observe: { period: 3000 },
    ipProtocol: 'udp4',
    serverProtocol: 'udp4',
    formats: [{ name: 'lightweightm2m/text', value: 1541 }],
    writeFormat: 'lightweightm2m/text',
  },
});

const RESOURCES = [
  ['/3/0', '0', 'Telefonica I+D'],
  ['/3/0', '1', 'lwm2m-node-lib client'],
  ['/3/0', '2', 'TID-0001'],
  ['/3/0', '3', '1.4.0'],
  ['/3303/0', '5700', process.env.LWM2M_NODE_TEMPERATURE || '21.5'],
  ['/3303/0', '5701', 'Cel'],
  ['/32769/0', '1', 'vendor-reading'],
  ['/32769/0', '3', '0'],
];
let runs = 0;

function fail(what, error) {
  console.error(`${what} failed: ${error && (error.message || error.name || error)}`);
  process.exit(1);
}

function step(actions, done) {
  if (actions.length === 0) return done();
  const [head, ...rest] = actions;
  head((error) => (error ? fail('setup', error) : step(rest, done)));
}

const creates = [...new Set(RESOURCES.map(([uri]) => uri))].map(
  (uri) => (next) => client.registry.create(uri, next),
);
const sets = RESOURCES.map(
  ([uri, id, value]) => (next) => client.registry.setResource(uri, id, value, next),
);

step([...creates, ...sets], () => {
  client.register(server.hostname, server.port, '', endpoint, (error, device) => {
    if (error) fail('register', error);
    client.setHandler(device.serverInfo, 'execute', (type, id, resource, args, done) => {
      if (String(type) !== '32769' || String(resource) !== '2') {
        done({ name: 'NOT_ALLOWED', code: '4.05' });
        return;
      }
      runs += 1;
      client.registry.setResource('/32769/0', '3', String(runs), (err) => {
        console.log(`executed /32769/0/2 ${args || ''}`.trim());
        done(err);
      });
    });
    console.log(`registered ${device.location}`);
    const lines = readline.createInterface({ input: process.stdin });
    lines.on('line', (line) => {
      const [name, value] = line.trim().split(/\s+/);
      if (name !== 'temperature' || value === undefined) {
        console.error(`unknown command: ${line}`);
        return;
      }
      client.registry.setResource('/3303/0', '5700', value, (err) => {
        if (err) fail('set temperature', err);
        console.log(`temperature ${value}`);
      });
    });
    lines.on('close', () => {
      client.unregister(device, () => process.exit(0));
      setTimeout(() => process.exit(0), 2000).unref();
    });
  });
});
