/**
 * The chat channel of the tests. It imports nothing Node-only, so the browser test loads this very
 * module (types stripped) and its client speaks the server's protocol.
 */
import * as Schema from "effect/Schema"
import * as Channel from "../src/Channel.ts"

export const RoomId = Schema.String.pipe(Schema.brand("RoomId"))
export type RoomId = typeof RoomId.Type
export const roomId = (id: string): RoomId => id as RoomId

export const ClientMessage = Schema.Union([
  Schema.TaggedStruct("Say", { room: RoomId, text: Schema.String }),
  Schema.TaggedStruct("Echo", { text: Schema.String }),
  Schema.TaggedStruct("Whoami", {}),
  Schema.TaggedStruct("Shout", { text: Schema.String }),
  Schema.TaggedStruct("Flood", { count: Schema.Number }),
  Schema.TaggedStruct("Kick", {}),
  Schema.TaggedStruct("Crash", {}),
  Schema.TaggedStruct("Wait", { ms: Schema.Number }),
  Schema.TaggedStruct("Follow", { room: RoomId })
])

export const ServerMessage = Schema.Union([
  Schema.TaggedStruct("Echoed", { text: Schema.String }),
  Schema.TaggedStruct("You", { id: Schema.String, name: Schema.String }),
  Schema.TaggedStruct("Notice", { text: Schema.String }),
  Schema.TaggedStruct("Tick", { n: Schema.Number })
])

export const NoSuchRoom = Schema.TaggedStruct("NoSuchRoom", { room: Schema.String })

export const chat = Channel.make({
  name: "chat",
  client: ClientMessage,
  server: ServerMessage,
  topics: {
    room: {
      key: RoomId,
      payload: Schema.Struct({ from: Schema.String, text: Schema.String }),
      presence: Schema.Struct({ name: Schema.String }),
      history: 5
    }
  },
  requests: {
    history: {
      request: Schema.Struct({ room: RoomId }),
      response: Schema.Array(Schema.String),
      error: NoSuchRoom
    },
    slow: { request: Schema.Struct({ ms: Schema.Number }), response: Schema.Number },
    count: { request: Schema.Struct({}), response: Schema.Number }
  }
})
