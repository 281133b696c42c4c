/**
 * Property tests whose cases are Effects: `effect` runs one Effect per fast-check case under a fresh
 * `TestClock` and the layers you give, `commands` runs model-based tests whose commands are Effects
 * against a system built per case from a layer, and `sync` is the plain synchronous property.
 * Imported by path (`@strata/core/Property`) because it needs the optional `fast-check` peer.
 *
 * A failing case fails the test with fast-check's report (seed, replay path, shrunk counterexample)
 * followed by the Effect's cause, pretty-printed.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Context from "effect/Context"
import * as Formatter from "effect/Formatter"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/testing/TestClock"
import * as fc from "fast-check"

/**
 * The generators of a property: a tuple of arbitraries (the case is a tuple of values) or a record
 * of them (the case is a record).
 *
 * @category models
 */
export type Arbitraries = ReadonlyArray<fc.Arbitrary<any>> | { readonly [key: string]: fc.Arbitrary<any> }

/**
 * The values of one case.
 *
 * @category models
 */
export type Values<A extends Arbitraries> = {
  -readonly [K in keyof A]: A[K] extends fc.Arbitrary<infer T> ? T : never
}

/**
 * Options every runner takes.
 *
 * @category models
 */
export interface Options {
  /** The seed, to replay a failure (fast-check prints it). */
  readonly seed?: number | undefined
  /** The replay path of a failure (fast-check prints it with the seed). */
  readonly path?: string | undefined
  /** Cases to run; default fast-check's (100). */
  readonly numRuns?: number | undefined
  /** Stop at the first failure without shrinking it. */
  readonly endOnFailure?: boolean | undefined
  /** Anything else fast-check's `assert` takes. */
  readonly parameters?: fc.Parameters<unknown> | undefined
}

/**
 * Options of the Effect runners.
 *
 * @category models
 */
export interface EffectOptions<R> extends Options {
  /**
   * The services the cases read, built afresh for each case (and, with `commands`, shared by the
   * commands of a case). It is built under the case's `TestClock`.
   */
  readonly layer?: Layer.Layer<R, unknown, never> | undefined
  /**
   * Real milliseconds one case (one command, with `commands`) may take; past it the case fails,
   * saying so. Under `TestClock` a sleep ends only when the test adjusts the clock, so a forgotten
   * `TestClock.adjust` shows up here rather than as a hung test. Default 10 000.
   */
  readonly timeout?: number | undefined
}

type Needs<R> = Exclude<R, TestClock.TestClock>

/**
 * The options argument of an Effect runner: optional when the cases need no services, otherwise a
 * `layer` that provides them is required.
 *
 * @category models
 */
export type EffectArgs<R> = [Needs<R>] extends [never]
  ? [options?: EffectOptions<never>]
  : [options: EffectOptions<Needs<R>> & { readonly layer: Layer.Layer<Needs<R>, unknown, never> }]

const defaultTimeout = 10_000

const toArbitrary = (arbitraries: Arbitraries): fc.Arbitrary<any> =>
  Array.isArray(arbitraries)
    ? fc.tuple(...(arbitraries as ReadonlyArray<fc.Arbitrary<unknown>>))
    : fc.record(arbitraries as Record<string, fc.Arbitrary<unknown>>)

/** @internal */
export const parametersOf = (options: Options | undefined): fc.Parameters<any> => ({
  ...options?.parameters,
  ...(options?.seed === undefined ? {} : { seed: options.seed }),
  ...(options?.path === undefined ? {} : { path: options.path }),
  ...(options?.numRuns === undefined ? {} : { numRuns: options.numRuns }),
  ...(options?.endOnFailure === undefined ? {} : { endOnFailure: options.endOnFailure }),
  // The Effect cause goes in the message, where every test runner shows it.
  includeErrorInReport: true
})

// `Cause.pretty` shows an error's message and stack; a typed error's fields (the id that was not
// found, the status that was wrong) are what a failing case is about, so they are printed too.
const fieldsOf = (error: unknown): string | undefined => {
  if (!(error instanceof Error)) return undefined
  const keys = Object.keys(error).filter((key) => key !== "stack" && key !== "message" && key !== "name")
  if (keys.length === 0) return undefined
  const name = (error as { readonly _tag?: unknown })._tag ?? error.name
  return `${String(name)} ${Formatter.formatJson(Object.fromEntries(keys.map((key) => [key, (error as unknown as Record<string, unknown>)[key]])), { space: 2 })}`
}

/** @internal */
export const prettyCause = (cause: Cause.Cause<unknown>): string => {
  const fields = cause.reasons.filter(Cause.isFailReason).flatMap((reason) => {
    const text = fieldsOf(reason.error)
    return text === undefined ? [] : [text]
  })
  return fields.length === 0 ? Cause.pretty(cause) : `${Cause.pretty(cause)}\nwith ${fields.join("\nand ")}`
}

/**
 * A case whose Effect failed: the message is the pretty-printed cause, with the fields of typed
 * errors.
 *
 * @category errors
 */
export class EffectFailure extends Error {
  readonly failure: Cause.Cause<unknown>
  constructor(cause: Cause.Cause<unknown>, prefix?: string) {
    super(`${prefix === undefined ? "" : `${prefix}\n`}${prettyCause(cause)}`)
    this.name = "EffectFailure"
    this.failure = cause
    // The runner's own frames say nothing; the cause carries the stacks that matter.
    this.stack = `${this.name}: ${this.message}`
  }
}

/**
 * A case that did not finish within its real-time limit.
 *
 * @category errors
 */
export class CaseTimeout extends Error {
  readonly timeout: number
  constructor(timeout: number, prefix?: string) {
    super(
      `${prefix === undefined ? "" : `${prefix}\n`}The case did not finish within ${timeout} ms of real time. Under TestClock a sleep ends only when the test adjusts the clock (TestClock.adjust).`
    )
    this.name = "CaseTimeout"
    this.timeout = timeout
    this.stack = `${this.name}: ${this.message}`
  }
}

/** @internal */
export const runBounded = async <A, E>(
  effect: Effect.Effect<A, E>,
  timeout: number,
  prefix?: string
): Promise<A> => {
  const controller = new AbortController()
  let timer: ReturnType<typeof setTimeout> | undefined
  const timedOut = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), timeout)
  })
  try {
    const exit = await Promise.race([Effect.runPromiseExit(effect, { signal: controller.signal }), timedOut])
    if (exit === "timeout") {
      controller.abort()
      throw new CaseTimeout(timeout, prefix)
    }
    if (Exit.isFailure(exit)) throw new EffectFailure(exit.cause, prefix)
    return exit.value
  } finally {
    clearTimeout(timer)
  }
}

// Any layer: its output type only says what the cases may read.
const withTestClock = (layer: unknown): Layer.Layer<any, unknown, never> =>
  layer === undefined
    ? TestClock.layer()
    : Layer.provideMerge(layer as Layer.Layer<any, unknown, never>, TestClock.layer())

/**
 * Runs `body` once per generated case, each under a fresh `TestClock` and a fresh build of
 * `layer`; resolves when every case succeeds, rejects with fast-check's report (seed, path, the
 * shrunk case) and the Effect's pretty-printed cause otherwise.
 *
 * @example
 * ```ts
 * it("a token bucket never goes negative", () =>
 *   Property.effect([fc.integer({ min: 1, max: 50 })], ([n]) =>
 *     Effect.gen(function* () {
 *       yield* TestClock.adjust("1 minute")
 *       assert.isAtLeast(yield* remaining(n), 0)
 *     }), { layer: Limiter.layerMemory, numRuns: 200 }))
 * ```
 * @category runners
 */
export const effect = <const A extends Arbitraries, E, R = never>(
  arbitraries: A,
  body: (values: Values<A>) => Effect.Effect<unknown, E, R>,
  ...[options]: EffectArgs<R>
): Promise<void> => {
  const layer = withTestClock(options?.layer)
  const timeout = options?.timeout ?? defaultTimeout
  return fc.assert(
    fc.asyncProperty(toArbitrary(arbitraries), async (values) => {
      const program = Effect.provide(body(values) as Effect.Effect<unknown, E, any>, layer, { local: true })
      await runBounded(program, timeout)
    }),
    parametersOf(options)
  )
}

/**
 * The synchronous property: `predicate` fails a case by returning `false` or throwing (an
 * `expect` that fails).
 *
 * @example
 * ```ts
 * Property.sync([Arbitraries.arbitrary(NoteInput)], ([note]) => Schema.is(NoteInput)(note))
 * ```
 * @category runners
 */
export const sync = <const A extends Arbitraries>(
  arbitraries: A,
  predicate: (values: Values<A>) => boolean | void,
  options?: Options
): void => fc.assert(fc.property(toArbitrary(arbitraries), predicate), parametersOf(options))

/**
 * One command of a model-based test: it may run when `check` accepts the model, and `run` acts on
 * the system under test (its services), asserts, and updates the model.
 *
 * @category models
 */
export interface Command<in out M extends object, out E = never, out R = never> {
  readonly name: string
  readonly check: (model: Readonly<M>) => boolean
  readonly run: (model: M) => Effect.Effect<void, E, R>
}

/**
 * Makes a command; its name is how the failing sequence is printed, so put the arguments in it.
 *
 * @example
 * ```ts
 * const create = fc.string().map((title) =>
 *   Property.command({ name: `create(${JSON.stringify(title)})`, run: (model: Model) => Effect.gen(function* () { … }) }))
 * ```
 * @category constructors
 */
export const command = <M extends object, E = never, R = never>(options: {
  readonly name: string
  readonly check?: ((model: Readonly<M>) => boolean) | undefined
  readonly run: (model: M) => Effect.Effect<void, E, R>
}): Command<M, E, R> => ({ name: options.name, check: options.check ?? (() => true), run: options.run })

type ServicesOf<C> = C extends fc.Arbitrary<Command<any, any, infer R>> ? R : never

/**
 * Options of `commands`.
 *
 * @category models
 */
export interface CommandsOptions<
  M extends object,
  Cs extends ReadonlyArray<fc.Arbitrary<Command<M, any, any>>>
> extends Omit<EffectOptions<never>, "layer"> {
  /** The model's initial state; called once per case. */
  readonly model: () => M
  /** Generators of the commands. */
  readonly commands: Cs
  /** Most commands per case; default fast-check's (size-based). */
  readonly maxCommands?: number | undefined
  /** With `seed` and `path`: the commands' replay path fast-check prints after a failure. */
  readonly replayPath?: string | undefined
}

interface Real {
  readonly context: Context.Context<any>
}

class EffectCommand<M extends object> implements fc.AsyncCommand<M, Real> {
  readonly command: Command<M, unknown, unknown>
  readonly timeout: number
  constructor(inner: Command<M, unknown, unknown>, timeout: number) {
    this.command = inner
    this.timeout = timeout
  }
  check(model: Readonly<M>): boolean {
    return this.command.check(model)
  }
  async run(model: M, real: Real): Promise<void> {
    const program = Effect.provideContext(
      this.command.run(model) as Effect.Effect<void, unknown, any>,
      real.context
    )
    await runBounded(program, this.timeout, `Command ${this.command.name} failed:`)
  }
  toString(): string {
    return this.command.name
  }
}

/**
 * A model-based test: fast-check generates sequences of commands, and each case builds the system
 * under test from `layer` (under a fresh `TestClock` the commands share), starts a fresh model,
 * and runs the commands whose `check` accepts the model. A failure prints the shrunk sequence.
 *
 * @example
 * ```ts
 * await Property.commands({
 *   model: () => ({ notes: new Map<string, Note>() }),
 *   commands: [create, read, remove],
 *   layer: Notes.layerMemory
 * })
 * ```
 * @category runners
 */
export const commands = <
  M extends object,
  const Cs extends ReadonlyArray<fc.Arbitrary<Command<M, any, any>>>
>(
  options: CommandsOptions<M, Cs> &
    ([Needs<ServicesOf<Cs[number]>>] extends [never]
      ? { readonly layer?: Layer.Layer<never, unknown, never> | undefined }
      : { readonly layer: Layer.Layer<Needs<ServicesOf<Cs[number]>>, unknown, never> })
): Promise<void> => {
  const layer = withTestClock(options.layer)
  const timeout = options.timeout ?? defaultTimeout
  const arbitrary = fc.commands(
    options.commands.map((arb) =>
      arb.map((generated) => new EffectCommand(generated as Command<M, unknown, unknown>, timeout))
    ),
    {
      ...(options.maxCommands === undefined ? {} : { maxCommands: options.maxCommands }),
      ...(options.replayPath === undefined ? {} : { replayPath: options.replayPath })
    }
  )
  return fc.assert(
    fc.asyncProperty(arbitrary, async (sequence) => {
      const scope = Scope.makeUnsafe()
      try {
        const context = await runBounded(
          Layer.buildWithMemoMap(layer, Layer.makeMemoMapUnsafe(), scope),
          timeout,
          "Building the system under test failed:"
        )
        await fc.asyncModelRun(() => ({ model: options.model(), real: { context } }), sequence)
      } finally {
        await Effect.runPromise(Scope.close(scope, Exit.void))
      }
    }),
    parametersOf(options)
  )
}
