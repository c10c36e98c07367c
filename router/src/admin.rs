//! The gRPC admin service: a thin skin over engine calls.
//!
//! Each RPC runs one closure on the engine task ([`call_engine`]); wire ↔
//! domain conversions and the error → `Status` mapping live here, in one
//! place. Health (`grpc.health.v1`) and reflection (v1 and v1alpha) are served
//! beside it, and a bearer token guards everything when configured.

use std::net::SocketAddr;

use plugin_api::Options;
use proto::admin::admin_server::{Admin, AdminServer};
use proto::admin::{
    CreateRoomRequest, GetRoomRequest, ListPluginsRequest, ListPluginsResponse, ListRoomsRequest,
    ListRoomsResponse, Plugin, PluginOption, Room,
};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use crate::driver::{EngineEvent, call_engine};
use crate::engine::RoomSpec;
use crate::registry::RoomError;

/// Why the admin listener refused to start.
#[derive(Debug, thiserror::Error)]
pub enum AdminConfigError {
    #[error(
        "refusing to serve the admin API on {0} without a token: set --admin-token (or SWITCHBOARD_ADMIN_TOKEN), or bind it to a loopback address"
    )]
    TokenRequired(SocketAddr),
}

/// Checks the bind address against the token rule.
pub fn check_exposure(addr: SocketAddr, token: Option<&str>) -> Result<(), AdminConfigError> {
    if token.is_none_or(str::is_empty) && !addr.ip().is_loopback() {
        return Err(AdminConfigError::TokenRequired(addr));
    }
    Ok(())
}

/// The one mapping from domain errors to gRPC status codes.
pub fn room_error_status(e: RoomError) -> Status {
    match e {
        RoomError::UnknownKind { .. } => Status::invalid_argument(format!("kind: {e}")),
        RoomError::BadName(_) => Status::invalid_argument(format!("name: {e}")),
        RoomError::Exists(_) => Status::already_exists(e.to_string()),
        RoomError::Option(o) => {
            Status::invalid_argument(format!("options.{}: {}", o.name, o.message))
        }
    }
}

fn engine_gone() -> Status {
    Status::unavailable("the router is shutting down")
}

/// The service.
pub struct AdminService {
    engine: mpsc::Sender<EngineEvent>,
}

impl AdminService {
    pub fn new(engine: mpsc::Sender<EngineEvent>) -> Self {
        Self { engine }
    }

    pub fn into_server(self) -> AdminServer<Self> {
        AdminServer::new(self)
    }
}

fn room_wire(i: proto::control::RoomInfo) -> Room {
    Room {
        name: i.name,
        kind: i.kind,
        participants: i.participants,
        max_participants: i.max_participants,
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn list_plugins(
        &self,
        _req: Request<ListPluginsRequest>,
    ) -> Result<Response<ListPluginsResponse>, Status> {
        let infos = call_engine(&self.engine, |e, _| e.registry().list())
            .await
            .ok_or_else(engine_gone)?;
        let plugins = infos
            .into_iter()
            .map(|p| Plugin {
                kind: p.kind.into(),
                description: p.description.into(),
                options: p
                    .options
                    .into_iter()
                    .map(|o| PluginOption {
                        name: o.name.into(),
                        r#type: serde_json::to_value(o.ty)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                        default_value: o.default,
                        help: o.help.into(),
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(ListPluginsResponse { plugins }))
    }

    async fn create_room(&self, req: Request<CreateRoomRequest>) -> Result<Response<Room>, Status> {
        let r = req.into_inner();
        if r.name.is_empty() {
            return Err(Status::invalid_argument("name: required"));
        }
        if r.kind.is_empty() {
            return Err(Status::invalid_argument("kind: required"));
        }
        let spec = RoomSpec {
            name: r.name.clone(),
            kind: r.kind,
            max_participants: r.max_participants,
            options: r
                .options
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect::<Options>(),
        };
        let name = r.name;
        let result = call_engine(&self.engine, move |e, _| {
            e.create_room(spec)?;
            Ok(e.room_info(&name))
        })
        .await
        .ok_or_else(engine_gone)?;
        match result {
            Ok(Some(info)) => Ok(Response::new(room_wire(info))),
            Ok(None) => Err(Status::internal("room vanished after creation")),
            Err(e) => Err(room_error_status(e)),
        }
    }

    async fn list_rooms(
        &self,
        _req: Request<ListRoomsRequest>,
    ) -> Result<Response<ListRoomsResponse>, Status> {
        let rooms = call_engine(&self.engine, |e, _| e.room_infos())
            .await
            .ok_or_else(engine_gone)?;
        Ok(Response::new(ListRoomsResponse {
            rooms: rooms.into_iter().map(room_wire).collect(),
        }))
    }

    async fn get_room(&self, req: Request<GetRoomRequest>) -> Result<Response<Room>, Status> {
        let name = req.into_inner().name;
        let shown = name.clone();
        let info = call_engine(&self.engine, move |e, _| e.room_info(&name))
            .await
            .ok_or_else(engine_gone)?;
        info.map(|i| Response::new(room_wire(i)))
            .ok_or_else(|| Status::not_found(format!("no room named `{shown}`")))
    }
}

/// Checks `authorization: Bearer <token>` on every call when a token is set.
#[derive(Clone)]
pub struct BearerAuth {
    expected: Option<String>,
}

impl BearerAuth {
    pub fn new(token: Option<String>) -> Self {
        Self {
            expected: token
                .filter(|t| !t.is_empty())
                .map(|t| format!("Bearer {t}")),
        }
    }
}

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else {
            return Ok(req);
        };
        match req.metadata().get("authorization").map(|v| v.to_str()) {
            Some(Ok(v)) if constant_time_eq(v.as_bytes(), expected.as_bytes()) => Ok(req),
            Some(_) => Err(Status::unauthenticated("wrong bearer token")),
            None => Err(Status::unauthenticated(
                "missing `authorization: Bearer <token>` metadata",
            )),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves admin, health and reflection on `listener` until `shutdown` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    engine: mpsc::Sender<EngineEvent>,
    token: Option<String>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AdminServer<AdminService>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::admin::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1();
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::admin::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha();
    let auth = BearerAuth::new(token);
    let admin = tonic::service::interceptor::InterceptedService::new(
        AdminService::new(engine).into_server(),
        auth.clone(),
    );
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tonic::transport::Server::builder()
        .add_service(tonic::service::interceptor::InterceptedService::new(
            health,
            auth.clone(),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            reflection_v1?,
            auth.clone(),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            reflection_v1alpha?,
            auth,
        ))
        .add_service(admin)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await?;
    Ok(())
}
