//! What kind of process an instance on a state directory is, with the word the history stores it as.

use super::state::UnknownWord;

/// What an instance (a process with the store open) is there for: whose executions it owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// An MCP server, or `workflow-mcp run`: owns the executions its sessions start.
    Server,
    /// The supervisor of one execution that outlives the session that started it: owns that one.
    Supervisor,
    /// A command that acts on what others run (`workflow-mcp cancel`): owns nothing.
    Command,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Server, Role::Supervisor, Role::Command];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Supervisor => "supervisor",
            Role::Command => "command",
        }
    }

    /// The role a record names (`as_str` backwards).
    pub fn parse(s: &str) -> Option<Role> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl rusqlite::types::ToSql for Role {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl rusqlite::types::FromSql for Role {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let word = value.as_str()?;
        Role::parse(word).ok_or_else(|| {
            rusqlite::types::FromSqlError::Other(Box::new(UnknownWord {
                word: word.to_owned(),
                what: "an instance role",
            }))
        })
    }
}
