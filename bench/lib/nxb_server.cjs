// Runs node-xmpp-bosh (npm 0.7.10, installed in bench/node_modules by `npm ci --prefix bench`) as
// the benchmark's peer: its BOSH endpoint at /http-bind and its WebSocket endpoint on the same
// port, in front of one upstream XMPP server on loopback.
//
//   node bench/lib/nxb_server.cjs PORT UPSTREAM_PORT [starttls]
//
// node-xmpp-bosh finds its upstream by an SRV lookup of the stream's domain or at port 5222 of it
// (its route="..." handling also connects to the domain at 5222). Instead of taking 127.0.0.1:5222,
// this launcher hands both connectors a lookup service (the `lookup_service` option its connector
// reads) that connects to 127.0.0.1:UPSTREAM_PORT. With the upstream's domain in `no_tls_domains`
// it talks plain XMPP upstream, as the gateway's plain column does, unless `starttls` is given.
// Prints "listening PORT" on stdout once the HTTP server accepts connections.
'use strict';

const path = require('node:path');
const { EventEmitter } = require('node:events');
const util = require('node:util');

const port = Number(process.argv[2]);
const upstreamPort = Number(process.argv[3]);
const starttls = process.argv[4] === 'starttls';
if (!port || !upstreamPort) {
  console.error('usage: node bench/lib/nxb_server.cjs PORT UPSTREAM_PORT [starttls]');
  process.exit(2);
}

const root = path.join(__dirname, '..', 'node_modules', 'node-xmpp-bosh');
const nxb = require(root);
const websocket = require(path.join(root, 'src', 'websocket.js'));

function LoopbackLookup(_port, stream) {
  EventEmitter.call(this);
  this._domain_name = stream.to;
}
util.inherits(LoopbackLookup, EventEmitter);
LoopbackLookup.prototype.connect = function connect(socket) {
  const onConnect = () => { socket.removeListener('error', onError); this.emit('connect'); };
  const onError = () => { socket.removeListener('connect', onConnect); this.emit('error', 'host-unknown'); };
  socket.once('connect', onConnect);
  socket.once('error', onError);
  socket.connect(upstreamPort, '127.0.0.1');
};

const options = {
  port,
  host: '127.0.0.1',
  path: /^\/http-bind(\/+)?$/,
  logging: 'FATAL',
  max_data_held: 100000,
  max_xmpp_stanza_size: 500000,
  max_bosh_connections: 2,
  window_size: 2,
  default_inactivity: 70,
  max_inactivity: 160,
  http_socket_keepalive: 60,
  max_streams_per_session: 8,
  http_headers: {},
  no_tls_domains: starttls ? [] : ['localhost'],
  firewall: { deny: [] },
  route_filter: /.*/,
  pidgin_compatible: true,
  trim_default_length: 256,
  system_info_password: '',
  websocket_ping_interval: 30,
  lookup_service: LoopbackLookup,
};

const bosh = nxb.start_bosh(options);
// What nxb.start_websocket() does, with the options above (it hands its connector none).
const wsServer = websocket.createServer(bosh, options);
// eslint-disable-next-line no-new
new nxb.connector.Connector(wsServer, options);

const net = require('node:net');
(function waitListening(tries) {
  const s = net.connect(port, '127.0.0.1');
  s.once('connect', () => { s.destroy(); process.stdout.write(`listening ${port}\n`); });
  s.once('error', () => {
    if (tries > 200) { console.error('nxb: not listening'); process.exit(1); }
    setTimeout(() => waitListening(tries + 1), 25);
  });
}(0));
