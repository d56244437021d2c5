//! The typed layout: the one place that maps a repository object to its path
//! (format-spec/layout.md). Nothing outside this module spells a path.

use crate::id::Id;

/// The directories of a repository, one per kind of object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `data/<first two hex digits>/<id>`: pack files.
    Pack,
    /// `index/<id>`: index files.
    Index,
    /// `snapshots/<id>`: snapshot files.
    Snapshot,
    /// `locks/<name>`: lock files.
    Lock,
    /// `wal/<WAL file name>`: WAL records.
    Wal,
    /// `keys/<id>`: key files (encrypted repositories).
    Key,
}

impl Kind {
    /// The directory holding this kind, with its trailing `/`.
    pub(crate) fn dir(self) -> &'static str {
        match self {
            Kind::Pack => "data/",
            Kind::Index => "index/",
            Kind::Snapshot => "snapshots/",
            Kind::Lock => "locks/",
            Kind::Wal => "wal/",
            Kind::Key => "keys/",
        }
    }
}

/// One object of a repository: what it is and its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Object {
    /// The repository's config.
    Config,
    /// A pack, named by the digest of its bytes.
    Pack(Id),
    /// An index file, named by the digest of its bytes.
    Index(Id),
    /// A snapshot, named by the digest of its bytes.
    Snapshot(Id),
    /// A lock file, named by its holder's random id.
    Lock(String),
    /// The record of an archived WAL file, named by that file.
    Wal(String),
    /// A key file, named by a random id.
    Key(Id),
}

impl Object {
    /// Where the object is stored, relative to the repository's root.
    pub(crate) fn path(&self) -> String {
        match self {
            Object::Config => "config".to_string(),
            Object::Pack(id) => format!("data/{}/{id}", &id.to_hex()[..2]),
            Object::Index(id) => format!("index/{id}"),
            Object::Snapshot(id) => format!("snapshots/{id}"),
            Object::Lock(name) => format!("locks/{name}"),
            Object::Wal(name) => format!("wal/{name}"),
            Object::Key(id) => format!("keys/{id}"),
        }
    }

    /// How the object is sealed in an encrypted repository, if it is sealed whole (packs are
    /// sealed blob by blob; the config and key files have layouts of their own).
    pub(crate) fn sealed(&self) -> Option<crate::crypto::Sealed> {
        use crate::crypto::Sealed;
        match self {
            Object::Index(_) => Some(Sealed::Index),
            Object::Snapshot(_) => Some(Sealed::Snapshot),
            Object::Lock(_) => Some(Sealed::Lock),
            Object::Wal(_) => Some(Sealed::Wal),
            Object::Config | Object::Pack(_) | Object::Key(_) => None,
        }
    }

    /// The object of `kind` stored at `path`, if `path` is exactly where such an object goes:
    /// ids in lowercase hex, packs in the directory of their first two digits, WAL records
    /// under a valid WAL file name. Anything else there is a stray.
    pub(crate) fn parse(kind: Kind, path: &str) -> Option<Object> {
        let name = path.strip_prefix(kind.dir())?;
        let id = || name.rsplit('/').next().and_then(|n| n.parse::<Id>().ok());
        let object = match kind {
            Kind::Pack => Object::Pack(id()?),
            Kind::Index => Object::Index(id()?),
            Kind::Snapshot => Object::Snapshot(id()?),
            Kind::Key => Object::Key(id()?),
            Kind::Lock if !name.is_empty() && !name.contains('/') => Object::Lock(name.into()),
            Kind::Wal if crate::wal::valid_wal_name(name) => Object::Wal(name.into()),
            Kind::Lock | Kind::Wal => return None,
        };
        (object.path() == path).then_some(object)
    }

    /// The id of a pack, index file or snapshot.
    pub(crate) fn id(&self) -> Option<Id> {
        match self {
            Object::Pack(id) | Object::Index(id) | Object::Snapshot(id) | Object::Key(id) => {
                Some(*id)
            }
            _ => None,
        }
    }

    /// The name of a lock file or WAL record.
    pub(crate) fn name(&self) -> Option<&str> {
        match self {
            Object::Lock(n) | Object::Wal(n) => Some(n),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip_and_strays_do_not_parse() {
        let id = Id::of(b"x");
        for (kind, object) in [
            (Kind::Pack, Object::Pack(id)),
            (Kind::Index, Object::Index(id)),
            (Kind::Snapshot, Object::Snapshot(id)),
            (Kind::Key, Object::Key(id)),
            (Kind::Lock, Object::Lock("abc".into())),
            (Kind::Wal, Object::Wal("000000010000000000000003".into())),
        ] {
            assert!(object.path().starts_with(kind.dir()));
            assert_eq!(Object::parse(kind, &object.path()), Some(object));
        }
        let hex = id.to_hex();
        for (kind, stray) in [
            (Kind::Pack, format!("data/zz/{hex}")),
            (Kind::Pack, format!("data/{hex}")),
            (Kind::Index, format!("index/{}", hex.to_uppercase())),
            (Kind::Index, format!("index/{hex}.tmp")),
            (Kind::Snapshot, format!("index/{hex}")),
            (Kind::Wal, "wal/notes.txt".to_string()),
            (Kind::Lock, "locks/a/b".to_string()),
        ] {
            assert_eq!(Object::parse(kind, &stray), None, "{stray}");
        }
    }
}
