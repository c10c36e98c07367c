//! What the client remembers between runs: the server, the nickname, the
//! devices and codecs chosen. A TOML file in the user's config directory
//! (`$XDG_CONFIG_HOME/switchboard/client.toml`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `host:port` of the router's control channel.
    pub server: String,
    pub nickname: String,
    /// Sources and sinks as the pipelines crate names them (`mic`,
    /// `tone:440`, `element:pulsesrc device=…`, `pattern:ball`, `discard`).
    pub microphone: String,
    pub speaker: String,
    pub camera: String,
    /// Pipeline definitions by name; the audio one may be `auto`
    /// ([`crate::backend::ROOM_CODEC`]): the room's codec.
    pub audio_codec: String,
    pub video_codec: String,
    /// Short beeps when the floor is granted and when it ends.
    pub tones: bool,
    /// The push-to-talk key, as GDK names it (`space`, `F12`, `Control_R`).
    pub talk_key: String,
    /// `system` (follow the desktop), `light` or `dark`.
    pub appearance: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            server: format!("127.0.0.1:{}", proto::DEFAULT_CONTROL_PORT),
            nickname: String::new(),
            microphone: "mic".into(),
            speaker: "speakers".into(),
            camera: "camera".into(),
            audio_codec: crate::backend::ROOM_CODEC.into(),
            video_codec: "jpeg".into(),
            tones: true,
            talk_key: "space".into(),
            appearance: "system".into(),
        }
    }
}

impl Settings {
    /// Where settings live.
    pub fn path() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
        Some(base.join("switchboard").join("client.toml"))
    }

    /// The saved settings, or the defaults when there are none or they do
    /// not parse (a broken file is not fatal: it is overwritten on save).
    pub fn load() -> Self {
        Self::path()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| toml::from_str(&t).ok())
            .unwrap_or_default()
    }

    pub fn save(&self) -> std::io::Result<()> {
        let Some(path) = Self::path() else {
            return Ok(());
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let text = toml::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, text)
    }

    /// The server address, resolved.
    pub fn server_addr(&self) -> Result<std::net::SocketAddr, String> {
        use std::net::ToSocketAddrs;
        let (_, host_port, _) = client::tls::parse_address(&self.server);
        let with_port = if host_port.contains(':') {
            host_port.to_owned()
        } else {
            format!("{host_port}:{}", proto::DEFAULT_CONTROL_PORT)
        };
        with_port
            .to_socket_addrs()
            .map_err(|e| format!("server `{}`: {e}", self.server))?
            .next()
            .ok_or_else(|| format!("server `{}`: no address", self.server))
    }

    /// TLS as the server's address says (`tls://`, `tcp://`, or TLS when
    /// offered), trusting routers on first use (the known-hosts file under
    /// `$XDG_DATA_HOME/switchboard`), as the CLI does.
    pub fn tls_options(&self) -> client::tls::TlsOptions {
        let (transport, _, server_name) = client::tls::parse_address(&self.server);
        client::tls::TlsOptions {
            transport,
            trust: client::tls::Trust::KnownHosts(client::tls::default_known_hosts()),
            server_name,
        }
    }
}
