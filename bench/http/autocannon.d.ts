/**
 * Types for the part of autocannon's programmatic API the runner uses; autocannon ships none and
 * the bench adds no `@types` package for four fields.
 */
declare module "autocannon" {
  interface Options {
    readonly url: string
    readonly connections?: number
    /** Seconds. */
    readonly duration?: number
    readonly method?: string
    readonly headers?: Record<string, string>
    readonly body?: string
    /** Seconds before a request counts as a timeout. */
    readonly timeout?: number
  }

  interface Histogram {
    readonly average: number
    readonly mean: number
    readonly stddev: number
    readonly min: number
    readonly max: number
    readonly total: number
    readonly p50: number
    readonly p99: number
  }

  interface Result {
    /** Requests per second, sampled each second. */
    readonly requests: Histogram & { readonly sent: number }
    /** Milliseconds. */
    readonly latency: Histogram
    readonly errors: number
    readonly timeouts: number
    readonly non2xx: number
    /** Seconds. */
    readonly duration: number
  }

  /** Without a callback, the returned tracker is also a promise of the result. */
  function autocannon(options: Options): PromiseLike<Result>

  export default autocannon
}
