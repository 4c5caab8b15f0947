// Prosody plus a gateway in front of it, started and stopped together: the usual fixture of a test
// file. `stop()` always stops both, and returns the gateway's problem at exit (null when it exited 0).
import { startProsody } from './prosody.mjs';
import { startGateway, stopGatewayChecked } from './gateway.mjs';
import { stopAllClients } from './clients.mjs';

/**
 * startStack({ prosody: {...startProsody options}, gateway: {...startGateway options} })
 * Resolves to { prosody, gw, stop() }.
 */
export async function startStack({ prosody: prosodyOpts = {}, gateway: gatewayOpts = {} } = {}) {
  const prosody = await startProsody(prosodyOpts);
  let gw;
  try {
    gw = await startGateway({ prosody, ...gatewayOpts });
  } catch (err) {
    await prosody.stop();
    throw err;
  }
  let result;
  const stop = async () => {
    if (result !== undefined) return result;
    await stopAllClients().catch(() => {});
    try {
      result = await stopGatewayChecked(gw);
    } finally {
      await prosody.stop();
    }
    return result;
  };
  return { prosody, gw, stop };
}
