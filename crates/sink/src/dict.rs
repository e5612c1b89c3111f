//! Shared zstd dictionaries (docs/format.md §5.3): a dictionary is an ordinary blob (its
//! bytes as [`crypto::train_dictionary`] trains them, compressed and sealed like any blob);
//! a data blob compressed with one starts, after opening, with a zstd skippable frame
//! naming the dictionary's blob id ([`crypto::dict_frame`]). Every blob stays decodable on
//! its own: the reader loads the dictionary it names.

use std::sync::Arc;

use taosbackup_core::BlobId;

use crate::crypto;
use crate::error::{Error, Result};
use crate::repo::{Repo, decode_blob};

/// The largest dictionary trained (bytes). Measured on the benchmark's meters data (issue
/// 18): 32 KiB from ~128 blocks of ~29 KB compressed them best; 64 and 110 KiB from the
/// same samples did worse.
pub(crate) const DICTIONARY_SIZE: usize = 32 * 1024;

impl Repo {
    /// The dictionary whose bytes this handle already holds (read or trained through it).
    pub(crate) fn cached_dictionary(&self, id: &BlobId) -> Option<Arc<Vec<u8>>> {
        self.inner
            .dictionaries
            .lock()
            .ok()
            .and_then(|d| d.get(id).cloned())
    }

    /// Remembers dictionary `bytes` under blob id `id`.
    pub(crate) fn remember_dictionary(&self, id: BlobId, bytes: Vec<u8>) -> Arc<Vec<u8>> {
        let bytes = Arc::new(bytes);
        if let Ok(mut d) = self.inner.dictionaries.lock() {
            d.entry(id).or_insert_with(|| bytes.clone());
        }
        bytes
    }

    /// The bytes of dictionary blob `id`: from this handle's cache, else read (a committed
    /// blob) and remembered. A dictionary blob is itself compressed without a dictionary.
    pub(crate) async fn dictionary(&self, id: &BlobId) -> Result<Arc<Vec<u8>>> {
        if let Some(d) = self.cached_dictionary(id) {
            return Ok(d);
        }
        let (path, stored, raw_length) = self.read_sealed(id, false).await?;
        let bytes = decode_blob(&self.inner.crypto, &path, id, &stored, raw_length)?;
        Ok(self.remember_dictionary(*id, bytes))
    }

    /// Opens a sealed blob read from `pack`, decompresses it (with the dictionary it names,
    /// if any) and checks it hashes to `id`.
    pub(crate) async fn decode_stored(
        &self,
        pack: &str,
        id: &BlobId,
        stored: &[u8],
        raw_length: u32,
    ) -> Result<Vec<u8>> {
        let crypto = &self.inner.crypto;
        let where_ = format!("{pack} (blob {id})");
        let compressed = crypto.open(&where_, id.as_bytes(), stored)?;
        let Some((dict, payload)) = crypto::dictionary_of(&compressed) else {
            // Compressed without a dictionary (every blob before issue 18).
            let data = crypto::decompress(&where_, &compressed, raw_length as usize)?;
            return check_id(crypto, &where_, id, data, None);
        };
        let bytes = self.dictionary(&dict).await.map_err(|e| {
            Error::corrupt(
                &where_,
                format!("its dictionary {dict} cannot be read: {e}"),
            )
        })?;
        let data = crypto::decompress_with_dictionary(
            &where_,
            payload,
            raw_length as usize,
            &dict,
            &bytes,
        )?;
        check_id(crypto, &where_, id, data, Some(&dict))
    }
}

fn check_id(
    crypto: &crypto::Crypto,
    where_: &str,
    id: &BlobId,
    data: Vec<u8>,
    dict: Option<&BlobId>,
) -> Result<Vec<u8>> {
    let actual = match dict {
        None => crypto.blob_id(&data),
        Some(d) => crypto.blob_id_with_dictionary(&data, d),
    };
    if actual != *id {
        return Err(Error::corrupt(
            where_,
            "content does not hash to the blob id",
        ));
    }
    Ok(data)
}
