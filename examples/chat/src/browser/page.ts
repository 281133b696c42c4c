/**
 * The chat page's script, run by the browser as it is (the server strips the types): the typed
 * client of the chat channel on the page's own origin — the session cookie goes with the
 * handshake — the rooms, their members and messages, and the state of the connection. After a
 * reconnect the client resumes each room from the last message seen (`Recovered`), or the page
 * reloads the recent history when some were lost (`Gap`).
 */
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import type * as Channel from "@strata/ws/Channel"
import * as Client from "@strata/ws/Client"
import { chat, type ChatMessage, type Member, type RoomId, rooms } from "../Chat.ts"

const element = <E extends HTMLElement>(selector: string): E => {
  const found = document.querySelector<E>(selector)
  if (found === null) throw new Error(`the page has no ${selector}`)
  return found
}

const me = document.body.dataset["userId"] ?? ""
const ui = {
  status: element("#status"),
  title: element("#room-title"),
  notice: element("#notice"),
  messages: element<HTMLOListElement>("#messages"),
  members: element<HTMLUListElement>("#members"),
  form: element<HTMLFormElement>("#say"),
  text: element<HTMLInputElement>("#text")
}

// Rendering ----------------------------------------------------------------------------------------

const showStatus = (status: Client.Status): void => {
  const [state, text] = ((): readonly [string, string] => {
    switch (status._tag) {
      case "Connecting":
        return [
          "connecting",
          status.attempt === 0 ? "Connecting…" : `Connecting… (attempt ${status.attempt})`
        ]
      case "Open":
        return ["open", "Online"]
      case "Reconnecting":
        return ["reconnecting", `Offline: reconnecting in ${Math.ceil(status.delay / 1000)} s`]
      case "Closed":
        return ["closed", "Disconnected: reload the page"]
      case "Refused":
        return [
          "closed",
          status.status === 400
            ? "This page is out of date: reload it"
            : "Your session ended: reload to log in"
        ]
    }
  })()
  ui.status.dataset["state"] = state
  ui.status.textContent = text
}

const notice = (text: string): void => {
  ui.notice.textContent = text
}

/** The messages shown, by offset: one that comes both in the history and live is shown once. */
let shown = new Map<number, HTMLLIElement>()

const clearMessages = (): void => {
  shown = new Map()
  ui.messages.replaceChildren()
}

const addMessage = (offset: number, message: ChatMessage): void => {
  if (shown.has(offset)) return
  const item = document.createElement("li")
  item.dataset["offset"] = String(offset)
  if (message.userId === me) item.classList.add("mine")
  const at = new Date(message.at)
  const time = document.createElement("time")
  time.dateTime = at.toISOString()
  time.textContent = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
  const who = document.createElement("span")
  who.className = "who"
  who.textContent = message.name
  const text = document.createElement("span")
  text.className = "text"
  text.textContent = message.text
  item.append(time, who, text)
  let next: number | undefined
  for (const other of shown.keys()) if (other > offset && (next === undefined || other < next)) next = other
  ui.messages.insertBefore(item, next === undefined ? null : shown.get(next)!)
  shown.set(offset, item)
  if (next === undefined) ui.messages.scrollTop = ui.messages.scrollHeight
}

const showMembers = (members: ReadonlyArray<Channel.Member<Member>>): void => {
  // One line per user, however many tabs they have open.
  const names = new Map(members.map((m) => [m.meta.userId, m.meta.name]))
  ui.members.replaceChildren(
    ...[...names.values()].toSorted().map((name) => {
      const item = document.createElement("li")
      item.textContent = name
      return item
    })
  )
}

const showRoom = (room: RoomId): void => {
  ui.title.textContent = rooms.find((r) => r.id === room)?.title ?? room
  for (const button of document.querySelectorAll<HTMLButtonElement>("#rooms button[data-room]")) {
    button.setAttribute("aria-current", String(button.dataset["room"] === room))
  }
  history.replaceState(null, "", `#${room}`)
}

// The client ---------------------------------------------------------------------------------------

type Command =
  { readonly _tag: "Enter"; readonly room: RoomId } | { readonly _tag: "Say"; readonly text: string }

const program = Effect.gen(function* () {
  const client = yield* Client.make(chat, {
    url: `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/chat`
  })
  let current: { readonly room: RoomId; readonly fiber: Fiber.Fiber<void>; entered: boolean } | undefined

  const refreshMembers = (room: RoomId) =>
    client.presence("room", room).pipe(
      Effect.flatMap((members) =>
        Effect.sync(() => {
          if (current?.room === room) showMembers(members)
        })
      ),
      Effect.ignore
    )

  const loadHistory = (room: RoomId) =>
    client.request("history", { room, limit: 100 }).pipe(
      Effect.flatMap((history) =>
        Effect.sync(() => {
          for (const { offset, message } of history.messages) addMessage(offset, message)
        })
      ),
      Effect.catch((error) =>
        Effect.sync(() =>
          notice(`No history: ${error._tag === "HistoryRefused" ? error.reason : error.message}`)
        )
      )
    )

  // The join is confirmed: tell the room (its members look again at who is here), and look too.
  const entered = (room: RoomId) =>
    Effect.suspend(() => {
      if (current?.room === room) current.entered = true
      return Effect.andThen(Effect.ignore(client.send({ _tag: "Entered", room })), refreshMembers(room))
    })

  const onDelivery = (room: RoomId, delivery: Client.Delivery<ChatMessage>) => {
    switch (delivery._tag) {
      case "Joined":
        return Effect.andThen(loadHistory(room), entered(room))
      case "Message":
        return Effect.sync(() => addMessage(delivery.offset, delivery.payload))
      case "Recovered":
        // The missed messages follow as `Message`s.
        return Effect.andThen(
          Effect.sync(() =>
            notice(
              delivery.replayed === 0
                ? "Reconnected: nothing was missed."
                : `Reconnected: ${delivery.replayed} missed message(s) recovered.`
            )
          ),
          entered(room)
        )
      case "Gap":
        return Effect.gen(function* () {
          notice("Reconnected: some messages could not be recovered; showing the latest.")
          clearMessages()
          yield* loadHistory(room)
          yield* entered(room)
        })
    }
  }

  const enter = (room: RoomId) =>
    Effect.gen(function* () {
      if (current?.room === room) return
      if (current !== undefined) {
        const previous = current
        current = undefined
        // Ending the stream leaves the topic; the server handles the leave before `Left`.
        yield* Fiber.interrupt(previous.fiber)
        if (previous.entered) yield* Effect.ignore(client.send({ _tag: "Left", room: previous.room }))
      }
      clearMessages()
      ui.members.replaceChildren()
      notice("")
      showRoom(room)
      const fiber = yield* Effect.forkScoped(
        Stream.runForEach(client.subscribe("room", room), (delivery) => onDelivery(room, delivery)).pipe(
          Effect.catch((error) => Effect.sync(() => notice(`You cannot be in this room: ${error.message}`)))
        )
      )
      current = { room, fiber, entered: false }
    })

  const say = (text: string) =>
    current === undefined
      ? Effect.sync(() => notice("Choose a room first."))
      : client
          .send({ _tag: "Say", room: current.room, text })
          .pipe(Effect.catch((error) => Effect.sync(() => notice(`Not sent: ${error.message}`))))

  yield* Effect.forkScoped(
    Stream.runForEach(client.status, (status) => Effect.sync(() => showStatus(status)))
  )
  yield* Effect.forkScoped(
    Stream.runForEach(client.messages, (message) => {
      switch (message._tag) {
        case "PresenceChanged":
          return current?.room === message.room ? refreshMembers(message.room) : Effect.void
        case "Notice":
          return Effect.sync(() => notice(message.text))
      }
    })
  )
  // In case a change was missed (a process that died without telling): look again now and then.
  yield* Effect.forkScoped(
    Effect.repeat(
      Effect.suspend(() => (current === undefined ? Effect.void : refreshMembers(current.room))),
      Schedule.spaced("15 seconds")
    )
  )

  // User actions go through one queue, so room changes and posts run one at a time, in order.
  const commands = yield* Queue.unbounded<Command>()
  for (const button of document.querySelectorAll<HTMLButtonElement>("#rooms button[data-room]")) {
    button.addEventListener("click", () => {
      Queue.offerUnsafe(commands, { _tag: "Enter", room: button.dataset["room"] as RoomId })
    })
  }
  ui.form.addEventListener("submit", (event) => {
    event.preventDefault()
    const text = ui.text.value.trim()
    if (text === "") return
    ui.text.value = ""
    Queue.offerUnsafe(commands, { _tag: "Say", text })
  })
  const fromHash = rooms.find((r) => `#${r.id}` === location.hash)
  Queue.offerUnsafe(commands, { _tag: "Enter", room: fromHash?.id ?? rooms[0]!.id })
  return yield* Effect.forever(
    Effect.flatMap(Queue.take(commands), (command) =>
      command._tag === "Enter" ? enter(command.room) : say(command.text)
    )
  )
})

Effect.runFork(Effect.scoped(program))
