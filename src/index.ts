/**
 * @saacms/realtime: Server-Sent Events for saacms records, on Effect.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as Access from "./Access.js"
/** @since 0.1.0 */
export * as Cors from "./Cors.js"
/** @since 0.1.0 */
export * as DurableObject from "./DurableObject.js"
/** @since 0.1.0 */
export * as Event from "./Event.js"
/** @since 0.1.0 */
export * as Frame from "./Frame.js"
/** @since 0.1.0 */
export * as Heartbeat from "./Heartbeat.js"
/** @since 0.1.0 */
export * as Hub from "./Hub.js"
/** @since 0.1.0 */
export * as Metrics from "./Metrics.js"
/** @since 0.1.0 */
export * as Plugin from "./Plugin.js"
/** @since 0.1.0 */
export * as Realtime from "./Realtime.js"
/** @since 0.1.0 */
export * as RealtimeConfig from "./RealtimeConfig.js"
/** @since 0.1.0 */
export * as RealtimeError from "./RealtimeError.js"
/** @since 0.1.0 */
export * as RealtimeHttp from "./RealtimeHttp.js"
/** @since 0.1.0 */
export * as ReplayBuffer from "./ReplayBuffer.js"

/**
 * The reference's entry point: `realtime(options)` returns the saacms `PluginDef`.
 *
 * @since 0.1.0
 * @category constructors
 */
export { realtime } from "./Plugin.js"

/**
 * The reference's Durable Object class (one object per record), for Workers hosts.
 *
 * @since 0.1.0
 * @category constructors
 */
export { SaacmsRealtimeDO } from "./DurableObject.js"

/**
 * The reference's public types, under their reference names.
 *
 * @since 0.1.0
 * @category models
 */
export type { PluginDef, RealtimeEvent, RealtimeOptions, RealtimePublisher, RealtimeRouteContext } from "./Plugin.js"
