/**
 * Who may be in which room, and a room's recent messages read back from the fan-out's history (in
 * SQLite or Redis): one store serves both the resume after a reconnect and the page's first view.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { Hub, PubSub } from "@strata/ws"
import { chat, ChatMessage, type History, type RoomId, rooms } from "./Chat.ts"
import type { User } from "./Users.ts"

/** Why `user` may not be in `room`, or `undefined` when they may. */
export const refusal = (user: User, room: RoomId): string | undefined => {
  const found = rooms.find((r) => r.id === room)
  if (found === undefined) return `there is no room ${room}`
  if (found.adminsOnly && user.role !== "admin") return `${found.title} is for admins only`
  return undefined
}

// The id the hub gives the topic `room` with this key (the key's JSON, as the channel encodes it).
const topicOf = (room: RoomId): string => Hub.topicId(chat.name, "room", JSON.stringify(room))

const decodeMessage = Schema.decodeUnknownOption(Schema.fromJsonString(ChatMessage))

/**
 * The last `limit` messages of a room, oldest first, with their offsets: the page renders them
 * when it joins and then appends the live events that follow (skipping offsets it already has).
 */
export const recent = (
  room: RoomId,
  limit: number
): Effect.Effect<History, PubSub.PubSubError, PubSub.PubSub> =>
  Effect.gen(function* () {
    const pubsub = yield* PubSub.PubSub
    const topic = topicOf(room)
    const head = yield* pubsub.replay(topic, undefined)
    const from = Math.max(0, head.offset - limit)
    let replay = yield* pubsub.replay(topic, { e: head.epoch, o: from })
    // Fewer kept than asked for: start at the oldest one kept.
    if (replay.result === "gap" && replay.missed !== undefined) {
      replay = yield* pubsub.replay(topic, { e: head.epoch, o: from + replay.missed })
    }
    const messages = replay.events.flatMap((event) =>
      Option.match(decodeMessage(event.payload), {
        onNone: () => [],
        onSome: (message) => [{ offset: event.offset, message }]
      })
    )
    return { epoch: replay.epoch, messages }
  })
