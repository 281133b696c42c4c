/**
 * The notes store of the example: an app-wide service (not request-scoped), so the app layer
 * provides it. In memory here; a database-backed one would have the same shape.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"

export interface Note {
  readonly id: string
  readonly owner: string
  readonly title: string
  readonly body: string
}

export class Notes extends Context.Service<
  Notes,
  {
    readonly list: (owner: string) => Effect.Effect<ReadonlyArray<Note>>
    readonly find: (id: string) => Effect.Effect<Note | undefined>
    readonly create: (input: Omit<Note, "id">) => Effect.Effect<Note>
    readonly remove: (id: string) => Effect.Effect<boolean>
  }
>()("example/Notes") {}

export const layerMemory = Layer.effect(Notes)(
  Effect.gen(function* () {
    const store = yield* Ref.make(new Map<string, Note>())
    let next = 1
    return Notes.of({
      list: (owner) => Effect.map(Ref.get(store), (m) => [...m.values()].filter((n) => n.owner === owner)),
      find: (id) => Effect.map(Ref.get(store), (m) => m.get(id)),
      create: (input) =>
        Ref.modify(store, (m) => {
          const note = { ...input, id: String(next++) }
          return [note, new Map(m).set(note.id, note)]
        }),
      remove: (id) =>
        Ref.modify(store, (m) => {
          if (!m.has(id)) return [false, m]
          const copy = new Map(m)
          copy.delete(id)
          return [true, copy]
        })
    })
  })
)
