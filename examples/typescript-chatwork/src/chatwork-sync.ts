/**
 * Seed 002's `syncChatworkRooms`: list the rooms, read each room's messages, store them,
 * and say after each room how far it got. The AbortSignal stops it between and during
 * requests.
 */

export interface Room {
  room_id: number;
  name: string;
}

export interface SyncResult {
  created: number;
  updated: number;
  total: number;
  messages: number;
}

/** The app's store; a Map here, Prisma in the seed. */
const stored = new Map<number, { name: string; messages: number }>();

async function get<T>(base: string, token: string, path: string, signal: AbortSignal): Promise<T> {
  const res = await fetch(`${base}${path}`, { headers: { "x-chatworktoken": token }, signal });
  if (!res.ok) throw new Error(`Chatwork ${path}: HTTP ${res.status}`);
  return (await res.json()) as T;
}

export async function syncChatworkRooms(
  base: string,
  token: string,
  signal: AbortSignal,
  onRoom: (done: number, total: number) => Promise<void>,
): Promise<SyncResult> {
  const rooms = await get<Room[]>(base, token, "/v2/rooms", signal);
  const result: SyncResult = { created: 0, updated: 0, total: rooms.length, messages: 0 };
  for (const [i, room] of rooms.entries()) {
    const messages = await get<unknown[]>(base, token, `/v2/rooms/${room.room_id}/messages`, signal);
    if (stored.has(room.room_id)) result.updated++;
    else result.created++;
    stored.set(room.room_id, { name: room.name, messages: messages.length });
    result.messages += messages.length;
    await onRoom(i + 1, rooms.length);
  }
  return result;
}
