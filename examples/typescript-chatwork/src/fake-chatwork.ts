/**
 * A stand-in for the Chatwork API on loopback (node's http module), so the example runs
 * offline: `GET /v2/rooms` and `GET /v2/rooms/{id}/messages`, token checked, each answer
 * a little slow so a cancel can land mid-sync.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export const FAKE_TOKEN = "fake-chatwork-token";

export interface FakeChatwork {
  url: string;
  close(): Promise<void>;
}

const ROOMS = Array.from({ length: 8 }, (_, i) => ({ room_id: 1000 + i, name: `room ${i + 1}`, type: "group" }));

function messagesOf(roomId: number): { message_id: string; body: string; send_time: number }[] {
  return Array.from({ length: (roomId % 5) + 1 }, (_, i) => ({
    message_id: `${roomId}-${i}`,
    body: `hello ${i} from ${roomId}`,
    send_time: 1_760_000_000 + i,
  }));
}

export async function startFakeChatwork(latencyMs = 120): Promise<FakeChatwork> {
  const server: Server = createServer((req, res) => {
    const send = (status: number, body: unknown): void => {
      setTimeout(() => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(body));
      }, latencyMs);
    };
    if (req.headers["x-chatworktoken"] !== FAKE_TOKEN) return send(401, { errors: ["Invalid API token"] });
    const path = new URL(req.url ?? "/", "http://x").pathname;
    if (path === "/v2/rooms") return send(200, ROOMS);
    const m = /^\/v2\/rooms\/(\d+)\/messages$/.exec(path);
    if (m) return send(200, messagesOf(Number(m[1])));
    send(404, { errors: ["not found"] });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}
