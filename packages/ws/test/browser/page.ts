/**
 * What the browser runs: the real typed client (this file and the package's sources are served with
 * their types stripped, Effect from its `dist`), against the test server it was loaded from.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Channel from "../../src/Channel.ts"
import * as Client from "../../src/Client.ts"
import { chat, roomId } from "../chat.ts"

const base = `ws://${location.host}/ws/chat`

/** One element at a time from a stream. */
const puller = <A, E>(stream: Stream.Stream<A, E>) =>
  Effect.map(Stream.toPull(stream), (pull) => {
    const buffer: Array<A> = []
    return Effect.suspend(() =>
      buffer.length > 0
        ? Effect.succeed(buffer.shift()!)
        : Effect.map(pull, (chunk) => {
            buffer.push(...chunk)
            return buffer.shift()!
          })
    )
  })

const conversation = Effect.gen(function* () {
  const lobby = roomId("lobby")
  const ada = yield* Client.make(chat, { url: `${base}?token=1` })
  const messages = yield* puller(ada.messages)
  const room = yield* puller(ada.subscribe("room", lobby))
  const welcome = yield* messages
  const joined = yield* room
  yield* ada.send({ _tag: "Whoami" })
  const you = yield* messages
  const history = yield* ada.request("history", { room: lobby })
  const error = yield* Effect.flip(ada.request("history", { room: roomId("nowhere") }))
  yield* ada.send({ _tag: "Say", room: lobby, text: "from the browser" })
  const event = yield* room
  const members = yield* ada.presence("room", lobby)
  const status = yield* ada.currentStatus
  return {
    welcome,
    joined: joined._tag,
    you,
    history,
    error,
    event,
    members,
    status,
    protocol: chat.protocol
  }
}).pipe(Effect.scoped)

const waitForEnd = (client: Client.Client<any>) =>
  Stream.runHead(Stream.filter(client.status, (s) => s._tag === "Refused" || s._tag === "Closed")).pipe(
    Effect.map(Option.getOrUndefined)
  )

const refusals = Effect.gen(function* () {
  const older = Channel.make({ ...chat.definition, server: Schema.Union([Schema.TaggedStruct("Old", {})]) })
  const stale = yield* Client.make(older, { url: `${base}?token=1` })
  const anonymous = yield* Client.make(chat, { url: base })
  return { stale: yield* waitForEnd(stale), anonymous: yield* waitForEnd(anonymous) }
}).pipe(Effect.scoped)

Object.assign(globalThis, {
  strataConversation: () => Effect.runPromise(conversation),
  strataRefusals: () => Effect.runPromise(refusals)
})
document.title = "ready"
