/**
 * A TCP proxy in front of Redis that can lose a reply: it forwards a request,
 * and when the request matches, drops the connection as the reply comes back
 * (the command ran; the client never learns it). New connections are then
 * held, unconnected, until `release()`, so a test can act while the client
 * waits to reconnect and resend.
 */
import { connect, createServer, type Server, type Socket } from "node:net"

export interface LossyProxy {
  readonly port: number
  /** The next request containing one of `markers` runs, but its reply is lost with the connection. */
  readonly loseReplyTo: (markers: ReadonlyArray<string>) => Promise<void>
  /** Lets held connections through, and every later one. */
  readonly release: () => void
  /** How many requests seen so far contained one of `markers`. */
  readonly count: (markers: ReadonlyArray<string>) => number
  readonly close: () => Promise<void>
}

export const makeLossyProxy = async (target: { host: string; port: number }): Promise<LossyProxy> => {
  let hold = false
  let markers: ReadonlyArray<string> | null = null
  let lost: () => void = () => {}
  const held: Array<() => void> = []
  const sent: string[] = []
  const sockets = new Set<Socket>()

  const pipe = (client: Socket) => {
    const upstream = connect(target.port, target.host)
    sockets.add(upstream)
    let dropNextReply = false
    client.on("data", (chunk: Buffer) => {
      const text = chunk.toString("latin1")
      sent.push(text)
      if (markers?.some((m) => text.includes(m))) {
        markers = null
        dropNextReply = true
      }
      upstream.write(chunk)
    })
    upstream.on("data", (chunk: Buffer) => {
      if (dropNextReply) {
        hold = true
        client.destroy()
        upstream.destroy()
        lost()
        return
      }
      client.write(chunk)
    })
    const end = () => {
      client.destroy()
      upstream.destroy()
    }
    client.on("close", end)
    upstream.on("close", end)
    client.on("error", end)
    upstream.on("error", end)
    client.resume()
  }

  const server: Server = createServer((client) => {
    sockets.add(client)
    client.pause()
    if (hold) held.push(() => pipe(client))
    else pipe(client)
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const address = server.address()
  if (address === null || typeof address === "string") throw new Error("the proxy has no port")

  return {
    port: address.port,
    loseReplyTo: (m) =>
      new Promise<void>((resolve) => {
        markers = m
        lost = resolve
      }),
    release: () => {
      hold = false
      for (const go of held.splice(0)) go()
    },
    count: (m) => sent.filter((text) => m.some((one) => text.includes(one))).length,
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}
