/**
 * The logging a host chooses for the runtimes this package runs itself (the
 * PluginDef's, a Durable Object's): the least severe level written, and the
 * logger that writes.
 *
 * @internal
 */
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import type * as RealtimeConfig from "../RealtimeConfig.js"

export type Options = RealtimeConfig.LoggingOptions

const levels: ReadonlyArray<string> = LogLevel.allLevels.map((level) => level._tag)

/** `true` for the name of an Effect log level. */
export const isLevel = (value: unknown): value is LogLevel.Literal => typeof value === "string" && levels.includes(value)

/** Refuses what is not a log level, naming the option. */
export const validate = (options: Options, name = "logLevel"): void => {
  if (options.logLevel !== undefined && !isLevel(options.logLevel)) {
    throw new TypeError(`${name} must be one of ${levels.join(", ")}`)
  }
}

/** The logging `options` ask for, for a runtime's layer. */
export const layer = (options: Options): Layer.Layer<never> =>
  Layer.mergeAll(
    options.logLevel === undefined ? Layer.empty : Logger.minimumLogLevel(LogLevel.fromLiteral(options.logLevel)),
    options.logger === undefined ? Layer.empty : Logger.replace(Logger.defaultLogger, options.logger)
  )
