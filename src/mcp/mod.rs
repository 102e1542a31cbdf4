//! The protocol layer: the rmcp server and its tools, executions as tasks and as resources (with
//! subscriptions), tool inputs and outputs, the text written for models, and the stdio transport. It maps
//! domain types; it never spawns processes itself.

pub mod reply;
pub mod resources;
pub mod schema;
pub mod serve;
pub mod server;
pub mod subscriptions;
pub mod tasks;
pub mod text;
pub mod transport;
pub mod types;
pub mod waiting;

pub use serve::serve;
pub use server::WorkflowServer;
