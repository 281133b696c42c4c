/**
 * Schema → fast-check: an `fc.Arbitrary` of a Schema's values (`arbitrary`) or of what a client sends
 * (`arbitraryEncoded`), for property tests of request bodies, channel messages and webhook events.
 * Imported by path (`@strata/core/Arbitraries`) because it needs the optional `fast-check` peer.
 *
 * Checks that carry generation hints (lengths, bounds, integer/finite, patterns, uniqueness) shape
 * the generator; every check is still run on each value, so a check without hints is a filter. A
 * filter that keeps failing is an error that names its path, never a hang.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Equal from "effect/Equal"
import { dual } from "effect/Function"
import * as Exit from "effect/Exit"
import * as Schema from "effect/Schema"
import * as SchemaAST from "effect/SchemaAST"
import * as fc from "fast-check"

/**
 * A Schema this module cannot generate values for: a Declaration without a hint, constraints that
 * contradict each other, a recursive schema with no finite value, or a filter that keeps failing.
 * `path` is where in the schema (`["items", 0, "createdAt"]`), `tag` the AST node's tag.
 *
 * @category errors
 */
export class ArbitraryError extends Data.TaggedError("ArbitraryError")<{
  readonly path: ReadonlyArray<PropertyKey>
  readonly tag: string
  readonly reason: string
}> {
  override get message(): string {
    return `Cannot generate values for the ${this.tag} at ${formatPath(this.path)}: ${this.reason}`
  }
}

/**
 * Options of `arbitrary` and `arbitraryEncoded`.
 *
 * @category models
 */
export interface Options {
  /**
   * How many times a recursive schema (`Schema.suspend`) may nest inside itself; default 3. Past it,
   * only the non-recursive alternatives are generated (an empty array, an absent optional key, the
   * other members of a union).
   */
  readonly maxDepth?: number | undefined
  /**
   * How many candidates a filter (a check without generation hints) may reject in a row before the
   * arbitrary gives up with an `ArbitraryError`; default 100.
   */
  readonly maxFilterAttempts?: number | undefined
}

/**
 * The annotation key of a fast-check hint (see `withArbitrary`).
 *
 * @category annotations
 */
export const HintId = "@strata/core/Arbitraries/hint" as const

/**
 * A generator given by hand: an arbitrary, or a function of the arbitraries of a Declaration's
 * type parameters (`Schema.Option(X)` has one).
 *
 * @category models
 */
export type Hint<A> =
  fc.Arbitrary<A> | ((typeParameters: ReadonlyArray<fc.Arbitrary<unknown>>) => fc.Arbitrary<A>)

type HintCheck<A, S extends Schema.Top> = [A] extends [S["Type"]]
  ? unknown
  : { readonly "strata: hint": "the hint generates values the schema's type does not have" }

/**
 * Gives a schema its generator, for what cannot be derived (a Declaration, a filter that rarely
 * passes). The schema's checks still run on each generated value.
 *
 * @example
 * ```ts
 * const Email = Schema.String.check(Schema.isPattern(/^[^@]+@[^@]+$/)).pipe(Arbitraries.withArbitrary(fc.emailAddress()))
 * ```
 * @category annotations
 */
export const withArbitrary: {
  <A>(hint: Hint<A>): <S extends Schema.Top>(self: S & HintCheck<A, S>) => S["Rebuild"]
  <S extends Schema.Top, A>(self: S & HintCheck<A, S>, hint: Hint<A>): S["Rebuild"]
} = dual(2, (self: Schema.Top, hint: Hint<unknown>) => self.annotate({ [HintId]: hint }))

/**
 * An arbitrary of the schema's values (the `Type` side): what a handler holds once it decoded a
 * request. Every value it generates passes `Schema.is(schema)`.
 *
 * Derived: structs (required, `optional`, `optionalKey`), records, unions and tagged unions,
 * literals and enums, template literals, strings, numbers, bigints, booleans, arrays, tuples
 * (optional elements, rest), brands, `suspend` (down to `maxDepth`), classes and other
 * Declarations with a codec link (Option, Redacted, DateTime, …), Date, URL, Uint8Array,
 * ReadonlyMap and ReadonlySet. A Declaration with none needs `withArbitrary`.
 *
 * What filters cost: a check without generation hints (`isMultipleOf`, `makeFilter`, …) runs on
 * generated candidates and each one it rejects is generated again, so a check that rarely passes
 * slows every run, and one that fails `maxFilterAttempts` times in a row stops it with an
 * `ArbitraryError` naming the path. Shrinking skips candidates the filter rejects. Give such a
 * schema its generator with `withArbitrary`.
 *
 * @example
 * ```ts
 * fc.assert(fc.property(Arbitraries.arbitrary(NoteInput), (note) => note.title.length >= 1))
 * ```
 * @category constructors
 */
export const arbitrary = <S extends Schema.Constraint>(
  schema: S,
  options?: Options
): fc.Arbitrary<S["Type"]> => compile(SchemaAST.toType(schema.ast), options)

/**
 * An arbitrary of the schema's encoded values: what a client sends. Each is a generated value
 * encoded with the schema, so it decodes back; a value the schema cannot encode (an encoded-side
 * check the type does not imply) is skipped like a filtered one.
 *
 * @example
 * ```ts
 * const bodies = Arbitraries.arbitraryEncoded(Schema.Struct({ at: Schema.DateTimeUtcFromString }))
 * ```
 * @category constructors
 */
export const arbitraryEncoded = <S extends Schema.ConstraintEncoder<unknown>>(
  schema: S,
  options?: Options
): fc.Arbitrary<S["Encoded"]> => {
  const encode = Schema.encodeUnknownExit(schema as unknown as Schema.Codec<unknown, unknown>)
  const attempts = options?.maxFilterAttempts ?? defaultFilterAttempts
  return filterMap(
    arbitrary(schema, options),
    (value) => {
      try {
        const exit = encode(value)
        return Exit.isSuccess(exit) ? { value: exit.value } : undefined
      } catch {
        // An asynchronous or service-needing encoding cannot run here.
        return undefined
      }
    },
    attempts,
    () => new ArbitraryError({ path: [], tag: schema.ast._tag, reason: "its values do not encode" })
  )
}

// ---------------------------------------------------------------------------------------------------
// Filters with a bound
// ---------------------------------------------------------------------------------------------------

const defaultFilterAttempts = 100
const defaultMaxDepth = 3

// fast-check's own `filter` retries forever; a filter that (almost) never passes would hang the run.
class BoundedFilter<T> extends fc.Arbitrary<T> {
  readonly arb: fc.Arbitrary<T>
  readonly predicate: (value: T) => boolean
  readonly attempts: number
  readonly onExhausted: () => Error
  constructor(
    arb: fc.Arbitrary<T>,
    predicate: (value: T) => boolean,
    attempts: number,
    onExhausted: () => Error
  ) {
    super()
    this.arb = arb
    this.predicate = predicate
    this.attempts = attempts
    this.onExhausted = onExhausted
  }
  generate(mrng: fc.Random, biasFactor: number | undefined): fc.Value<T> {
    for (let attempt = 0; attempt < this.attempts; attempt++) {
      const candidate = this.arb.generate(mrng, biasFactor)
      if (this.predicate(candidate.value)) return candidate
    }
    throw this.onExhausted()
  }
  canShrinkWithoutContext(value: unknown): value is T {
    return this.arb.canShrinkWithoutContext(value) && this.predicate(value)
  }
  shrink(value: T, context: unknown): fc.Stream<fc.Value<T>> {
    return this.arb.shrink(value, context).filter((candidate) => this.predicate(candidate.value))
  }
}

const boundedFilter = <T>(
  arb: fc.Arbitrary<T>,
  predicate: (value: T) => boolean,
  attempts: number,
  onExhausted: () => Error
): fc.Arbitrary<T> => new BoundedFilter(arb, predicate, attempts, onExhausted)

/** @internal */
export const filterMap = <A, B>(
  arb: fc.Arbitrary<A>,
  f: (a: A) => { readonly value: B } | undefined,
  attempts: number,
  onExhausted: () => Error
): fc.Arbitrary<B> =>
  boundedFilter(
    arb.map((a) => f(a)),
    (b): b is { readonly value: B } => b !== undefined,
    attempts,
    onExhausted
  ).map((b) => b!.value)

// ---------------------------------------------------------------------------------------------------
// Constraints
// ---------------------------------------------------------------------------------------------------

interface Pattern {
  readonly source: string
  readonly flags: string
}

interface Constraint {
  readonly minimum?: unknown
  readonly exclusiveMinimum?: boolean | undefined
  readonly maximum?: unknown
  readonly exclusiveMaximum?: boolean | undefined
  readonly minLength?: number | undefined
  readonly maxLength?: number | undefined
  readonly minCodePoints?: number | undefined
  readonly maxCodePoints?: number | undefined
  readonly minSize?: number | undefined
  readonly maxSize?: number | undefined
  readonly minProperties?: number | undefined
  readonly maxProperties?: number | undefined
  readonly patterns?: ReadonlyArray<Pattern> | undefined
  readonly number?: "integer" | "finite" | undefined
  readonly uniqueBy?: ((value: any) => unknown) | undefined
}

// Numbers, bigints and Dates all compare with `<`; bounds of another domain are left alone.
const compare = (a: any, b: any): number => (a < b ? -1 : a > b ? 1 : 0)

const larger = (a: number | undefined, b: number | undefined) =>
  a === undefined ? b : b === undefined ? a : Math.max(a, b)
const smaller = (a: number | undefined, b: number | undefined) =>
  a === undefined ? b : b === undefined ? a : Math.min(a, b)

const mergeConstraint = (self: Constraint, that: Constraint): Constraint => {
  let minimum = self.minimum
  let exclusiveMinimum = self.exclusiveMinimum
  if (that.minimum !== undefined) {
    const order = minimum === undefined ? 1 : compare(that.minimum, minimum)
    if (order > 0) {
      minimum = that.minimum
      exclusiveMinimum = that.exclusiveMinimum
    } else if (order === 0) exclusiveMinimum = exclusiveMinimum === true || that.exclusiveMinimum === true
  }
  let maximum = self.maximum
  let exclusiveMaximum = self.exclusiveMaximum
  if (that.maximum !== undefined) {
    const order = maximum === undefined ? -1 : compare(that.maximum, maximum)
    if (order < 0) {
      maximum = that.maximum
      exclusiveMaximum = that.exclusiveMaximum
    } else if (order === 0) exclusiveMaximum = exclusiveMaximum === true || that.exclusiveMaximum === true
  }
  return {
    minimum,
    exclusiveMinimum,
    maximum,
    exclusiveMaximum,
    minLength: larger(self.minLength, that.minLength),
    maxLength: smaller(self.maxLength, that.maxLength),
    minCodePoints: larger(self.minCodePoints, that.minCodePoints),
    maxCodePoints: smaller(self.maxCodePoints, that.maxCodePoints),
    minSize: larger(self.minSize, that.minSize),
    maxSize: smaller(self.maxSize, that.maxSize),
    minProperties: larger(self.minProperties, that.minProperties),
    maxProperties: smaller(self.maxProperties, that.maxProperties),
    patterns: [...(self.patterns ?? []), ...(that.patterns ?? [])],
    number:
      self.number === "integer" || that.number === "integer"
        ? "integer"
        : self.number === "finite" || that.number === "finite"
          ? "finite"
          : undefined,
    uniqueBy: that.uniqueBy ?? self.uniqueBy
  }
}

const flattenChecks = (checks: ReadonlyArray<SchemaAST.Check<any>>): Array<SchemaAST.Filter<any>> =>
  checks.flatMap((check) => (check._tag === "Filter" ? [check] : flattenChecks(check.checks)))

const constraintOf = (checks: ReadonlyArray<SchemaAST.Check<any>>, inherited: Constraint): Constraint => {
  let out = inherited
  const visit = (check: SchemaAST.Check<any>) => {
    const hint = check.annotations?.arbitraryConstraint as Constraint | undefined
    if (hint !== undefined) out = mergeConstraint(out, hint)
    if (check._tag === "FilterGroup") check.checks.forEach(visit)
  }
  checks.forEach(visit)
  return out
}

const describeCheck = (filter: SchemaAST.Filter<any>): string => {
  const annotations = filter.annotations
  const text = annotations?.message ?? annotations?.expected ?? annotations?.identifier
  return typeof text === "string" ? `"${text}"` : "a filter"
}

// ---------------------------------------------------------------------------------------------------
// The compiler
// ---------------------------------------------------------------------------------------------------

type Path = ReadonlyArray<PropertyKey>

/** @internal */
export const formatPath = (path: Path): string =>
  path.length === 0
    ? "the root"
    : path
        .map((key, index) =>
          typeof key === "number"
            ? `[${key}]`
            : typeof key === "symbol"
              ? `[${String(key)}]`
              : index === 0
                ? key
                : `.${key}`
        )
        .join("")

interface Context {
  readonly maxDepth: number
  readonly attempts: number
  readonly depthIdentifier: fc.DepthIdentifier
  // How often each AST node is being compiled right now: a Suspend whose body is among them is a
  // recursive reference.
  readonly active: Map<SchemaAST.AST, number>
  readonly suspended: Map<SchemaAST.AST, Map<number, Out>>
  depth: number
  // Recursive references met so far: a collection whose items recurse is kept small.
  recursions: number
}

// `undefined`: no value can be generated here within the depth bound (or ever: `Never`).
type Out = fc.Arbitrary<unknown> | undefined

const compile = (ast: SchemaAST.AST, options: Options | undefined): fc.Arbitrary<any> => {
  const context: Context = {
    maxDepth: options?.maxDepth ?? defaultMaxDepth,
    attempts: options?.maxFilterAttempts ?? defaultFilterAttempts,
    depthIdentifier: fc.createDepthIdentifier(),
    active: new Map(),
    suspended: new Map(),
    depth: 0,
    recursions: 0
  }
  const out = go(ast, [], context, {})
  if (out === undefined) {
    throw new ArbitraryError({
      path: [],
      tag: ast._tag,
      reason:
        ast._tag === "Never"
          ? "Never has no values"
          : "it has no value that does not recurse forever; give the recursion a base case"
    })
  }
  return out
}

const fail = (path: Path, ast: SchemaAST.AST, reason: string): never => {
  throw new ArbitraryError({ path, tag: ast._tag, reason })
}

const hintOf = (ast: SchemaAST.AST): Hint<unknown> | undefined => {
  let hint = ast.annotations?.[HintId] as Hint<unknown> | undefined
  for (const check of flattenChecks(ast.checks ?? [])) {
    const found = check.annotations?.[HintId] as Hint<unknown> | undefined
    if (found !== undefined) hint = found
  }
  return hint
}

const go = (ast: SchemaAST.AST, path: Path, context: Context, inherited: Constraint): Out => {
  context.active.set(ast, (context.active.get(ast) ?? 0) + 1)
  try {
    const filters = flattenChecks(ast.checks ?? [])
    const hint = hintOf(ast)
    const base =
      hint !== undefined
        ? fromHint(hint, ast, path, context)
        : goBase(ast, path, context, constraintOf(ast.checks ?? [], inherited))
    if (base === undefined || filters.length === 0) return base
    return boundedFilter(
      base,
      (value) => {
        for (const filter of filters) if (filter.run(value, ast, {}) !== undefined) return false
        return true
      },
      context.attempts,
      () =>
        new ArbitraryError({
          path,
          tag: ast._tag,
          reason: `${context.attempts} generated values in a row failed ${filters.map(describeCheck).join(" or ")}; give it a generator with Arbitraries.withArbitrary`
        })
    )
  } finally {
    const count = context.active.get(ast)! - 1
    if (count === 0) context.active.delete(ast)
    else context.active.set(ast, count)
  }
}

const fromHint = (hint: Hint<unknown>, ast: SchemaAST.AST, path: Path, context: Context): Out => {
  if (typeof hint !== "function") return hint
  const parameters = SchemaAST.isDeclaration(ast)
    ? ast.typeParameters.map((parameter, index) =>
        required(go(parameter, [...path, index], context, {}), parameter, [...path, index])
      )
    : []
  return hint(parameters)
}

const required = (out: Out, ast: SchemaAST.AST, path: Path): fc.Arbitrary<unknown> =>
  out ?? fail(path, ast, "it has no value within the recursion depth")

const goBase = (ast: SchemaAST.AST, path: Path, context: Context, constraint: Constraint): Out => {
  switch (ast._tag) {
    case "Never":
      return undefined
    case "Null":
      return fc.constant(null)
    case "Undefined":
    case "Void":
      return fc.constant(undefined)
    case "Literal":
      return fc.constant(ast.literal)
    case "UniqueSymbol":
      return fc.constant(ast.symbol)
    case "Boolean":
      return fc.boolean()
    case "String":
      return stringArbitrary(constraint, path, ast)
    case "Number":
      return numberArbitrary(constraint, path, ast)
    case "BigInt":
      return bigintArbitrary(constraint, path, ast)
    case "Symbol":
      return fc.string({ maxLength: 10 }).map((key) => Symbol.for(key))
    case "Unknown":
    case "Any":
      return fc.jsonValue({ maxDepth: 2 })
    case "ObjectKeyword":
      return fc.dictionary(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 1 }), {
        maxKeys: 5,
        noNullPrototype: true
      })
    case "Enum": {
      const values = [...new Set(ast.enums.map(([, value]) => value))]
      return values.length === 0 ? undefined : fc.constantFrom(...values)
    }
    case "TemplateLiteral":
      return templateArbitrary(ast, path, context)
    case "Union": {
      const members = ast.types.flatMap((member) => {
        const out = go(member, path, context, {})
        return out === undefined ? [] : [out]
      })
      if (members.length === 0) return undefined
      const union =
        members.length === 1
          ? members[0]!
          : fc.oneof({ depthIdentifier: context.depthIdentifier }, ...members)
      if (ast.options?.mode !== "oneOf") return union
      // Exactly one member must match: a value two members accept is not one of this union's.
      const is = Schema.is(Schema.make(ast))
      return boundedFilter(union, is, context.attempts, () =>
        fail(path, ast, "the members overlap too much for a oneOf union")
      )
    }
    case "Arrays":
      return arraysArbitrary(ast, path, context, constraint)
    case "Objects":
      return objectsArbitrary(ast, path, context, constraint)
    case "Suspend":
      return suspendArbitrary(ast, path, context)
    case "Declaration":
      return declarationArbitrary(ast, path, context, constraint)
  }
}

// ---------------------------------------------------------------------------------------------------
// Strings
// ---------------------------------------------------------------------------------------------------

// One UTF-16 code unit per unit, so fast-check's length bounds are the Schema's (`string.length`):
// mostly printable ASCII, with control characters and the rest of the Basic Multilingual Plane.
const codeUnit = fc.oneof(
  { weight: 12, arbitrary: fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 1 }) },
  {
    weight: 2,
    arbitrary: fc
      .oneof(fc.integer({ min: 0x80, max: 0xd7ff }), fc.integer({ min: 0xe000, max: 0xffff }))
      .map((code) => String.fromCharCode(code))
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom("\u0000", "\n", "\t", "\r", "\u2028", "\ufeff", "\u200b", "\u202e")
  }
)

// Regular-expression flags fast-check's `stringMatching` cannot take; a match without them is
// still a match with `i`, and the sticky and global flags only move where matching starts.
const unsupportedFlags = /[iyg]/g

const stringArbitrary = (constraint: Constraint, path: Path, ast: SchemaAST.AST): fc.Arbitrary<string> => {
  const minLength = Math.max(constraint.minLength ?? 0, constraint.minCodePoints ?? 0)
  const maxLength = constraint.maxLength
  if (maxLength !== undefined && minLength > maxLength) {
    fail(path, ast, `the length bounds contradict each other (at least ${minLength}, at most ${maxLength})`)
  }
  const pattern = constraint.patterns?.[0]
  if (pattern !== undefined) {
    try {
      return fc.stringMatching(
        new RegExp(pattern.source, pattern.flags.replace(unsupportedFlags, "")),
        maxLength === undefined ? {} : { maxLength }
      )
    } catch {
      // A pattern fast-check cannot read (lookbehind, backreferences): the checks filter plain strings.
    }
  }
  if (constraint.minCodePoints !== undefined || constraint.maxCodePoints !== undefined) {
    return fc.string({
      unit: "binary",
      minLength: constraint.minCodePoints ?? 0,
      ...(constraint.maxCodePoints === undefined ? {} : { maxLength: constraint.maxCodePoints })
    })
  }
  return fc.string({ unit: codeUnit, minLength, ...(maxLength === undefined ? {} : { maxLength }) })
}

// ---------------------------------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------------------------------

const int32 = 2 ** 31

const numberArbitrary = (constraint: Constraint, path: Path, ast: SchemaAST.AST): fc.Arbitrary<number> => {
  const minimum = typeof constraint.minimum === "number" ? constraint.minimum : undefined
  const maximum = typeof constraint.maximum === "number" ? constraint.maximum : undefined
  if (constraint.number === "integer") {
    let min =
      minimum === undefined
        ? Number.MIN_SAFE_INTEGER
        : constraint.exclusiveMinimum === true
          ? Math.floor(minimum) + 1
          : Math.ceil(minimum)
    let max =
      maximum === undefined
        ? Number.MAX_SAFE_INTEGER
        : constraint.exclusiveMaximum === true
          ? Math.ceil(maximum) - 1
          : Math.floor(maximum)
    min = Math.max(min, Number.MIN_SAFE_INTEGER)
    max = Math.min(max, Number.MAX_SAFE_INTEGER)
    if (min > max) return fail(path, ast, "no integer lies within the bounds")
    // Mostly small integers (ids, counts, pages), sometimes the far ends of the safe range.
    if (minimum === undefined && maximum === undefined) {
      return fc.oneof(
        { weight: 3, arbitrary: fc.integer({ min: -10_000, max: 10_000 }) },
        fc.maxSafeInteger()
      )
    }
    if (min >= -int32 && max < int32) return fc.integer({ min, max })
    return fc.bigInt({ min: BigInt(min), max: BigInt(max) }).map(Number)
  }
  const finite = constraint.number === "finite"
  if (minimum !== undefined && maximum !== undefined) {
    const empty =
      minimum > maximum ||
      (minimum === maximum && (constraint.exclusiveMinimum === true || constraint.exclusiveMaximum === true))
    if (empty) return fail(path, ast, "no number lies within the bounds")
  }
  return fc.double({
    // A bound rules NaN out: it compares false with everything.
    noNaN: finite || minimum !== undefined || maximum !== undefined,
    noDefaultInfinity: finite,
    ...(minimum === undefined ? {} : { min: minimum, minExcluded: constraint.exclusiveMinimum === true }),
    ...(maximum === undefined ? {} : { max: maximum, maxExcluded: constraint.exclusiveMaximum === true })
  })
}

const bigintArbitrary = (constraint: Constraint, path: Path, ast: SchemaAST.AST): fc.Arbitrary<bigint> => {
  let min = typeof constraint.minimum === "bigint" ? constraint.minimum : undefined
  let max = typeof constraint.maximum === "bigint" ? constraint.maximum : undefined
  if (min !== undefined && constraint.exclusiveMinimum === true) min++
  if (max !== undefined && constraint.exclusiveMaximum === true) max--
  if (min !== undefined && max !== undefined && min > max)
    return fail(path, ast, "no bigint lies within the bounds")
  return fc.bigInt({ ...(min === undefined ? {} : { min }), ...(max === undefined ? {} : { max }) })
}

// ---------------------------------------------------------------------------------------------------
// Template literals
// ---------------------------------------------------------------------------------------------------

const templateArbitrary = (ast: SchemaAST.TemplateLiteral, path: Path, context: Context): Out => {
  const parts: Array<fc.Arbitrary<unknown>> = []
  for (const [index, part] of ast.parts.entries()) {
    // A number inside a template is written in decimal: NaN and Infinity are not among its values.
    const out = go(part, [...path, index], context, { number: "finite" })
    if (out === undefined) return undefined
    parts.push(out)
  }
  const is = Schema.is(Schema.make(ast))
  return boundedFilter(
    fc.tuple(...parts).map((values) => values.map((value) => String(value)).join("")),
    is,
    context.attempts,
    () => fail(path, ast, "the generated parts do not form the template")
  )
}

// ---------------------------------------------------------------------------------------------------
// Arrays and tuples
// ---------------------------------------------------------------------------------------------------

const arraysArbitrary = (
  ast: SchemaAST.Arrays,
  path: Path,
  context: Context,
  constraint: Constraint
): Out => {
  const minLength = constraint.minLength ?? 0
  const maxLength = constraint.maxLength
  const elements: Array<fc.Arbitrary<unknown>> = []
  let requiredCount = 0
  for (const [index, element] of ast.elements.entries()) {
    const optional = SchemaAST.isOptional(element)
    const out = go(element, [...path, index], context, {})
    if (out === undefined) {
      if (!optional) return undefined
      break // the optional elements after it cannot be present either
    }
    elements.push(out)
    if (!optional) requiredCount++
  }
  const optionalAvailable = elements.length - requiredCount
  const allOptionalPresent = optionalAvailable === ast.elements.length - requiredCount
  const [head, ...tailAsts] = ast.rest
  const recursionsBefore = context.recursions
  const headOut = head === undefined ? undefined : go(head, [...path, ast.elements.length], context, {})
  // Items that contain the schema itself: few per level, or a tree of depth 3 has thousands of nodes.
  const size = context.recursions === recursionsBefore ? {} : { size: "xsmall" as const }
  const tail: Array<fc.Arbitrary<unknown>> = []
  for (const [index, element] of tailAsts.entries()) {
    const out = go(element, [...path, ast.elements.length + 1 + index], context, {})
    if (out === undefined) return undefined
    tail.push(out)
  }
  if (tailAsts.length > 0 && !allOptionalPresent) return undefined
  const uniqueBy = constraint.uniqueBy

  // The common case, `Schema.Array(X)` with its length checks.
  if (elements.length === 0 && tail.length === 0) {
    if (head === undefined) return minLength > 0 ? undefined : fc.constant([])
    if (headOut === undefined) return minLength > 0 ? undefined : fc.constant([])
    if (maxLength !== undefined && minLength > maxLength) {
      return fail(
        path,
        ast,
        `the length bounds contradict each other (at least ${minLength}, at most ${maxLength})`
      )
    }
    const bounds = {
      minLength,
      ...(maxLength === undefined ? {} : { maxLength }),
      ...size,
      depthIdentifier: context.depthIdentifier
    }
    return uniqueBy === undefined
      ? fc.array(headOut, bounds)
      : fc.uniqueArray(headOut, { ...bounds, selector: uniqueBy, comparator: (a, b) => Equal.equals(a, b) })
  }

  // A tuple: required elements, then a prefix of the optional ones; the rest (and the elements
  // after it) only once every optional element is present, as in TypeScript.
  const variants: Array<fc.Arbitrary<ReadonlyArray<unknown>>> = []
  for (let optionalCount = 0; optionalCount <= optionalAvailable; optionalCount++) {
    const fixed = elements.slice(0, requiredCount + optionalCount)
    const withRest = optionalCount === optionalAvailable && allOptionalPresent
    const fixedLength = fixed.length + (withRest ? tail.length : 0)
    if (!withRest) {
      if (fixedLength >= minLength && (maxLength === undefined || fixedLength <= maxLength)) {
        variants.push(fc.tuple(...fixed))
      }
      continue
    }
    const restMin = Math.max(0, minLength - fixedLength)
    const restMax = maxLength === undefined ? undefined : maxLength - fixedLength
    if (restMax !== undefined && restMax < restMin) continue
    if (headOut === undefined) {
      if (restMin === 0) variants.push(fc.tuple(...fixed, ...tail))
      continue
    }
    const rest = fc.array(headOut, {
      minLength: restMin,
      ...(restMax === undefined ? {} : { maxLength: restMax }),
      ...size,
      depthIdentifier: context.depthIdentifier
    })
    variants.push(
      fc
        .tuple(fc.tuple(...fixed), rest, fc.tuple(...tail))
        .map(([before, middle, after]) => [...before, ...middle, ...after])
    )
  }
  if (variants.length === 0) return fail(path, ast, "no tuple length satisfies the length checks")
  return variants.length === 1 ? variants[0] : fc.oneof(...variants)
}

// ---------------------------------------------------------------------------------------------------
// Structs and records
// ---------------------------------------------------------------------------------------------------

// `__proto__` as an own key must be defined, not assigned (assigning sets the prototype).
const assignProperty = (target: Record<PropertyKey, unknown>, key: PropertyKey, value: unknown) => {
  if (key === "__proto__") {
    Object.defineProperty(target, key, { value, enumerable: true, configurable: true, writable: true })
  } else {
    target[key] = value
  }
}

const toPropertyKey = (key: unknown): PropertyKey => (typeof key === "symbol" ? key : String(key))

const objectsArbitrary = (
  ast: SchemaAST.Objects,
  path: Path,
  context: Context,
  constraint: Constraint
): Out => {
  // fast-check takes symbol keys too; its types only say strings.
  const model: Record<string, fc.Arbitrary<unknown>> = {}
  const requiredKeys: Array<string> = []
  for (const property of ast.propertySignatures) {
    const optional = SchemaAST.isOptional(property.type)
    const out = go(property.type, [...path, property.name], context, {})
    if (out === undefined) {
      if (optional) continue // absent, the only value left within the depth bound
      return undefined
    }
    model[property.name as string] = out
    if (!optional) requiredKeys.push(property.name as string)
  }
  const names = new Set<PropertyKey>(ast.propertySignatures.map((p) => p.name))
  const record = names.size === 0 ? undefined : fc.record(model, { requiredKeys, noNullPrototype: true })
  if (ast.indexSignatures.length === 0) return record ?? fc.constant({})

  const extraMin = Math.max(0, (constraint.minProperties ?? 0) - requiredKeys.length)
  const extraMax =
    constraint.maxProperties === undefined
      ? undefined
      : Math.max(0, constraint.maxProperties - requiredKeys.length)
  const dictionaries: Array<fc.Arbitrary<Record<PropertyKey, unknown>>> = []
  for (const [index, signature] of ast.indexSignatures.entries()) {
    const recursionsBefore = context.recursions
    const key = go(signature.parameter, [...path, `[key ${index}]`], context, {})
    const value = go(signature.type, [...path, `[value ${index}]`], context, {})
    if (key === undefined || value === undefined) continue
    dictionaries.push(
      fc.dictionary(key.map(toPropertyKey), value, {
        noNullPrototype: true,
        depthIdentifier: context.depthIdentifier,
        ...(context.recursions === recursionsBefore ? {} : { size: "xsmall" as const }),
        ...(index === 0 && extraMin > 0 ? { minKeys: extraMin } : {}),
        ...(extraMax === undefined ? {} : { maxKeys: extraMax })
      })
    )
  }
  const merged = fc.tuple(fc.tuple(...dictionaries), record ?? fc.constant({})).map(([dicts, fields]) => {
    const out: Record<PropertyKey, unknown> = {}
    for (const dict of dicts) {
      for (const key of Reflect.ownKeys(dict)) if (!names.has(key)) assignProperty(out, key, dict[key])
    }
    for (const key of Reflect.ownKeys(fields))
      assignProperty(out, key, (fields as Readonly<Record<PropertyKey, unknown>>)[key])
    return out
  })
  const plainKeys = ast.indexSignatures.every((signature) => SchemaAST.isString(signature.parameter))
  if (dictionaries.length <= 1 && names.size === 0 && plainKeys) return merged
  // With several index signatures a key may match more than one; keep the values all of them accept.
  const is = Schema.is(Schema.make(ast))
  return boundedFilter(merged, is, context.attempts, () =>
    fail(path, ast, "its index signatures and properties do not agree on generated keys")
  )
}

// ---------------------------------------------------------------------------------------------------
// Recursion
// ---------------------------------------------------------------------------------------------------

const suspendArbitrary = (ast: SchemaAST.Suspend, path: Path, context: Context): Out => {
  const body = ast.thunk()
  const recursive = context.active.has(body)
  if (recursive) context.recursions++
  const depth = recursive ? context.depth + 1 : context.depth
  if (depth > context.maxDepth) return undefined
  let byDepth = context.suspended.get(body)
  const cached = byDepth?.get(depth)
  if (cached !== undefined || byDepth?.has(depth) === true) return cached
  const saved = context.depth
  context.depth = depth
  try {
    const out = go(body, path, context, {})
    if (byDepth === undefined) context.suspended.set(body, (byDepth = new Map()))
    byDepth.set(depth, out)
    return out
  } finally {
    context.depth = saved
  }
}

// ---------------------------------------------------------------------------------------------------
// Declarations
// ---------------------------------------------------------------------------------------------------

const minDate = -8_640_000_000_000_000
const maxDate = 8_640_000_000_000_000

const dateArbitrary = (constraint: Constraint): fc.Arbitrary<Date> => {
  const min = constraint.minimum instanceof Date ? constraint.minimum.getTime() : minDate
  const max = constraint.maximum instanceof Date ? constraint.maximum.getTime() : maxDate
  return fc.date({
    noInvalidDate: true,
    min: new Date(min + (constraint.exclusiveMinimum === true ? 1 : 0)),
    max: new Date(max - (constraint.exclusiveMaximum === true ? 1 : 0))
  })
}

const sizeBounds = (constraint: Constraint, depthIdentifier: fc.DepthIdentifier) => ({
  ...(constraint.minSize === undefined ? {} : { minLength: constraint.minSize }),
  ...(constraint.maxSize === undefined ? {} : { maxLength: constraint.maxSize }),
  depthIdentifier
})

const builtInDeclaration = (
  ast: SchemaAST.Declaration,
  path: Path,
  context: Context,
  constraint: Constraint
): Out | null => {
  const id = (ast.annotations?.["representation"] as { readonly id?: unknown } | undefined)?.id
  const parameter = (index: number) => {
    const p = ast.typeParameters[index]!
    return required(go(p, [...path, index], context, {}), p, [...path, index])
  }
  switch (id) {
    case "effect/schema/Date":
      return dateArbitrary(constraint)
    case "effect/schema/URL":
      return fc.webUrl().map((url) => new URL(url))
    case "effect/schema/Uint8Array":
      return fc.uint8Array({
        ...(constraint.minLength === undefined ? {} : { minLength: constraint.minLength }),
        ...(constraint.maxLength === undefined ? {} : { maxLength: constraint.maxLength })
      })
    case "effect/schema/Json":
    case "effect/schema/MutableJson":
      return fc.jsonValue({ maxDepth: 2 })
    case "effect/schema/ReadonlySet":
      return fc
        .uniqueArray(parameter(0), {
          ...sizeBounds(constraint, context.depthIdentifier),
          comparator: Equal.equals
        })
        .map((values) => new Set(values))
    case "effect/schema/ReadonlyMap":
      return fc
        .uniqueArray(fc.tuple(parameter(0), parameter(1)), {
          ...sizeBounds(constraint, context.depthIdentifier),
          selector: ([key]) => key,
          comparator: Equal.equals
        })
        .map((entries) => new Map(entries))
    default:
      return null
  }
}

const declarationArbitrary = (
  ast: SchemaAST.Declaration,
  path: Path,
  context: Context,
  constraint: Constraint
): Out => {
  const builtIn = builtInDeclaration(ast, path, context, constraint)
  if (builtIn !== null) return builtIn
  // Otherwise, as Effect's own generator does: find a link to a representation we can generate
  // (Effect's arbitrary hint, then the codec links), generate that, and decode it into the type.
  const annotations = ast.annotations ?? {}
  const typeParameters = ast.typeParameters.map((p) => Schema.make(SchemaAST.toType(p)))
  let link: SchemaAST.Link | undefined
  const toCodecArbitrary = annotations["toCodecArbitrary"]
  const toCodec = annotations["toCodec"]
  const toCodecJson = annotations["toCodecJson"]
  if (typeof toCodecArbitrary === "function") {
    link = toCodecArbitrary({ typeParameters, constraint: withoutOrder(constraint) })
  } else if (typeof toCodec === "function") {
    link = toCodec(typeParameters)
  } else if (typeof toCodecJson === "function") {
    link = toCodecJson(typeParameters)
  }
  if (link === undefined || link.transformation._tag !== "Transformation") {
    return fail(path, ast, "a Declaration without a generator; give it one with Arbitraries.withArbitrary")
  }
  const source = SchemaAST.toType(link.to)
  const generated = go(source, path, context, {})
  if (generated === undefined) return undefined
  const decode = Schema.decodeUnknownExit(
    Schema.make<Schema.Codec<unknown, unknown>>(SchemaAST.decodeTo(source, ast, link.transformation))
  )
  return filterMap(
    generated,
    (value) => {
      try {
        const exit = decode(value)
        return Exit.isSuccess(exit) ? { value: exit.value } : undefined
      } catch {
        return undefined
      }
    },
    context.attempts,
    () =>
      fail(
        path,
        ast,
        "the values generated for its representation do not decode into it; give it a generator with Arbitraries.withArbitrary"
      )
  )
}

const withoutOrder = (constraint: Constraint): Constraint | undefined => {
  const entries = Object.entries(constraint).filter(
    ([key, value]) =>
      value !== undefined &&
      key !== "order" &&
      !(key === "patterns" && (value as ReadonlyArray<unknown>).length === 0)
  )
  return entries.length === 0 ? undefined : Object.fromEntries(entries)
}
