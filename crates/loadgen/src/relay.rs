//! `relay`: a byte relay between a client and one upstream address, with no HTTP parsing at all.
//!
//! Run on the gateway's core in place of the gateway, it measures what any proxy costs in the benchmark's
//! topology before it does any work: the extra loopback hops and the wake-ups of a second core (c=1 latency).
//! The gateway's own overhead is what it adds over this relay.
//!
//! With `--websocket` it is the floor of the default path instead (`relay/websocket.rs`): HTTP from the client,
//! the Responses WebSocket with permessage-deflate over TLS to the upstream, as the gateway's default transport.
//! With `--hyper` it goes through hyper's server and client instead of copying bytes (`relay/hyper_relay.rs`).

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};

use crate::RelayArgs;

mod hyper_relay;
mod websocket;

pub async fn relay(a: RelayArgs) -> anyhow::Result<()> {
    if a.websocket {
        return websocket::relay(a).await;
    }
    if a.hyper {
        return hyper_relay::relay(a).await;
    }
    let to = a.to.as_deref().context("--to host:port is needed (or --websocket with --upstream)")?;
    let to: SocketAddr = to.parse().with_context(|| format!("--to wants host:port, got {to}"))?;
    let listener = listen(a.port).await?;
    loop {
        let client = accept(&listener).await;
        tokio::spawn(async move {
            if let Err(e) = pipe(client, to).await {
                eprintln!("loadgen relay: {e:#}");
            }
        });
    }
}

/// The relay's listener on 127.0.0.1:`port`, announced with the line the gateway and the fake print too (for the
/// scripts' `listening_url`).
async fn listen(port: u16) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.context("binding the relay's port")?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    Ok(listener)
}

/// The next client connection (a failed accept is said and the next one taken).
async fn accept(listener: &TcpListener) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((client, _)) => return client,
            Err(e) => eprintln!("loadgen relay: accept failed: {e}"),
        }
    }
}

async fn pipe(mut client: TcpStream, to: SocketAddr) -> anyhow::Result<()> {
    client.set_nodelay(true)?;
    let mut upstream = TcpStream::connect(to).await.with_context(|| format!("connecting to {to}"))?;
    upstream.set_nodelay(true)?;
    // A closed side ends the pair; errors after that (a reset) are the normal end of a benchmark connection.
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    Ok(())
}
