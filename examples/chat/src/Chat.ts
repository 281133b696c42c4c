/**
 * The chat channel: the rooms (a topic keyed by room id, with presence and a history to resume
 * from), the messages the page and the server exchange, and the history request. It imports nothing
 * Node-only: the browser loads this very module, so both ends speak one protocol (the channel hash).
 */
import * as Schema from "effect/Schema"
import * as Channel from "@strata/ws/Channel"

/** A room's id: lowercase letters, digits and dashes. */
export const RoomId = Schema.String.check(Schema.isPattern(/^[a-z0-9-]{1,32}$/)).pipe(Schema.brand("RoomId"))
export type RoomId = typeof RoomId.Type

/** A room of the catalog. */
export interface Room {
  readonly id: RoomId
  readonly title: string
  /** Only admins may join (and read or post). */
  readonly adminsOnly: boolean
}

/** The rooms there are; the join handler refuses any other id. */
export const rooms: ReadonlyArray<Room> = [
  { id: "lobby" as RoomId, title: "Lobby", adminsOnly: false },
  { id: "random" as RoomId, title: "Random", adminsOnly: false },
  { id: "staff" as RoomId, title: "Staff", adminsOnly: true }
]

/** A posted message, as the room's topic carries and keeps it. */
export const ChatMessage = Schema.Struct({
  userId: Schema.String,
  name: Schema.String,
  text: Schema.String,
  /** Epoch milliseconds, from the server's clock. */
  at: Schema.Number
})
export type ChatMessage = typeof ChatMessage.Type

/** The longest message the server takes. */
export const maxText = 1000

/** What each member of a room tells the others. */
export const Member = Schema.Struct({ userId: Schema.String, name: Schema.String })
export type Member = typeof Member.Type

export const ClientMessage = Schema.Union([
  /** Post to a room. */
  Schema.TaggedStruct("Say", {
    room: RoomId,
    text: Schema.String.check(Schema.isMinLength(1), Schema.isMaxLength(maxText))
  }),
  /**
   * The page's join of a room was confirmed (fresh, or again after a reconnect): the server tells
   * the room's members to refresh who is there.
   */
  Schema.TaggedStruct("Entered", { room: RoomId }),
  /** The page left a room. */
  Schema.TaggedStruct("Left", { room: RoomId })
])

export const ServerMessage = Schema.Union([
  /** Someone came into or left a room: ask for its members again. */
  Schema.TaggedStruct("PresenceChanged", { room: RoomId }),
  /** Something the user should read (a post that was refused, …). */
  Schema.TaggedStruct("Notice", { text: Schema.String })
])

/** The recent messages of a room, oldest first, each with its offset in the room's history. */
export const History = Schema.Struct({
  epoch: Schema.String,
  messages: Schema.Array(Schema.Struct({ offset: Schema.Number, message: ChatMessage }))
})
export type History = typeof History.Type

/** The history request was refused (the room does not exist, or is not for this user). */
export const HistoryRefused = Schema.TaggedStruct("HistoryRefused", { reason: Schema.String })

export const chat = Channel.make({
  name: "chat",
  client: ClientMessage,
  server: ServerMessage,
  topics: {
    room: { key: RoomId, payload: ChatMessage, presence: Member, history: 500 }
  },
  requests: {
    history: {
      request: Schema.Struct({
        room: RoomId,
        limit: Schema.Number.check(Schema.isInt(), Schema.isBetween({ minimum: 1, maximum: 200 }))
      }),
      response: History,
      error: HistoryRefused
    }
  }
})
