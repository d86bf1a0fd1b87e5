//! What dicom-rs must not be handed. dicom-rs 0.10.1 trusts what a file
//! declares: it reserves an element's declared length before reading it, its
//! RLE decoder indexes the fragment as its header says, and its JPEG adapter
//! copies the decoded image into room sized by the DICOM header. A hostile
//! file then takes gigabytes or panics, and a panic in the page traps the
//! engine. So a file is checked here first, reading it as dicom-rs reads it
//! (its own header decoder, its data set reader, its inflate adapter, its
//! accessors, jpeg-decoder's header reader); everything else stays
//! dicom-rs's. Each check was found by the `dicom` fuzz target
//! (fuzz/fuzz_targets/dicom.rs); most cases are files of the malformed
//! corpus (tests/malformed/).

use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::{DefaultDicomObject, Tag};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::dicom::DicomError;

/// dicom-rs reserves and zeroes an element's declared length before reading
/// it, so a 700-byte file declaring a 3.6 GB value made it allocate 3.6 GB
/// (found by the `dicom` fuzz target, in the data set and in the file meta
/// group). This reads the file first as dicom-rs will, and refuses at its
/// header a length the file cannot hold (in a deflated data set: a length
/// its inflated bytes cannot hold).
pub(super) fn check_lengths(name: &str, bytes: &[u8]) -> Result<(), DicomError> {
    let file = bytes.len() as u64;
    // One refusal for both walks (the meta group's and the data set's).
    let too_long = |length: u64| DicomError::Unreadable(format!("{name}: not a readable DICOM file: an element declares {length} bytes, more than the file's {file}"));
    // The file meta group (always explicit VR little endian, after the magic):
    // dicom-rs's reader of it reserves each declared length before reading,
    // and yields no header to check first. So its walk is repeated here with
    // the same header decoder and the same rule (elements until the group
    // length (0002,0000) is used up, whatever their group), values skipped.
    // A stray byte or an off-group element then lands this walk where it
    // lands dicom-rs's (found by the `dicom` fuzz target).
    // Where the "DICM" magic is, as dicom-rs finds it: after a 128-byte
    // preamble, or at the start of a file without one.
    let magic = if bytes.get(128..132) == Some(b"DICM".as_slice()) { 128 } else { 0 };
    {
        use dicom_encoding::decode::{explicit_le::ExplicitVRLittleEndianDecoder, Decode};
        let decoder = ExplicitVRLittleEndianDecoder::default();
        let mut meta = std::io::Cursor::new(bytes.get(magic + 4..).unwrap_or_default());
        let group_length = match decoder.decode_header(&mut meta) {
            Ok((h, _)) if h.tag == Tag(0x0002, 0x0000) && h.len.get() == Some(4) => {
                let at = meta.position() as usize;
                meta.get_ref().get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64)
            }
            _ => None, // dicom-rs refuses it, and says why
        };
        if let Some(group_length) = group_length {
            meta.set_position(meta.position() + 4);
            let end = meta.get_ref().len() as u64;
            let mut read = 0u64;
            while read < group_length && meta.position() < end {
                let Ok((header, header_bytes)) = decoder.decode_header(&mut meta) else { break };
                let Some(length) = header.len.get().map(u64::from) else { break };
                if length > file {
                    return Err(too_long(length));
                }
                meta.set_position(meta.position() + length);
                read = read.saturating_add(header_bytes as u64 + length);
            }
        }
    }
    // (from the "DICM" magic, which the meta table reader checks)
    let mut cursor = std::io::Cursor::new(bytes.get(magic..).unwrap_or_default());
    let Ok(meta) = dicom_object::meta::FileMetaTable::from_reader(&mut cursor) else {
        return Ok(()); // dicom-rs says why when it opens it
    };
    let Some(ts) = TransferSyntaxRegistry.get(meta.transfer_syntax().trim_end_matches('\0')) else {
        return Ok(());
    };
    if let dicom_encoding::transfer_syntax::Codec::Dataset(adapter) = ts.codec() {
        // A deflated data set: dicom-rs inflates it as it reads, so its lengths
        // are checked on the inflated bytes, against their size (found by the
        // `dicom` fuzz target: small deflated inputs made it reserve hundreds
        // of megabytes). Inflated here with dicom-rs's own adapter, through a
        // limit, so a deflate bomb ends in a message too.
        let Some(adapter) = adapter else { return Ok(()) }; // dicom-rs names what it cannot read
        let rest = &bytes[(magic + cursor.position() as usize).min(bytes.len())..];
        let Some(inflated) = inflate_data_set(adapter.as_ref(), rest) else {
            return Err(DicomError::Unreadable(format!(
                "{name}: not a readable DICOM file: its deflated data set inflates to more than {} MiB",
                MAX_INFLATED_DATA_SET >> 20
            )));
        };
        let size = inflated.len() as u64;
        // Read with the deflated syntax itself over the inflated bytes, as
        // dicom-rs reads it over its inflating reader.
        return walk_lengths(inflated.as_slice(), ts, size, |length| {
            DicomError::Unreadable(format!(
                "{name}: not a readable DICOM file: an element declares {length} bytes, more than the {size} bytes its deflated data set inflates to"
            ))
        });
    }
    walk_lengths(cursor, ts, file, too_long)
}

/// What a deflated data set inflates to, as far as dicom-rs can read it;
/// `None` past the limit (nothing past it is kept). A stream broken part way
/// still gives dicom-rs what inflates before the break, as it reads a few
/// bytes at a time; but a large read that meets the break loses what it
/// inflated (flate2 returns the error, not the bytes). So the stretch before
/// a break is inflated again a byte at a time: otherwise an element header
/// there, which dicom-rs reads, would go unchecked (found by the `dicom`
/// fuzz target).
fn inflate_data_set(adapter: &dyn dicom_encoding::transfer_syntax::DataRWAdapter, deflated: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;
    const CHUNK: usize = 64 << 10;
    let limit = MAX_INFLATED_DATA_SET as usize;
    let mut inflated = Vec::new();
    let mut chunk = vec![0u8; CHUNK];
    let mut reader = adapter.adapt_reader(Box::new(deflated));
    let mut broken = false;
    while inflated.len() < limit {
        let want = CHUNK.min(limit - inflated.len());
        match reader.read(&mut chunk[..want]) {
            Ok(0) => return Some(inflated),
            Ok(n) => inflated.extend_from_slice(&chunk[..n]),
            Err(_) => {
                broken = true;
                break;
            }
        }
    }
    if !broken {
        // At the limit: one byte more is one too many.
        return match reader.read(&mut chunk[..1]) {
            Ok(1) => None,
            _ => Some(inflated),
        };
    }
    // Broken: inflate again up to where the large reads got, then byte by byte.
    let mut reader = adapter.adapt_reader(Box::new(deflated));
    let good = inflated.len() as u64;
    if std::io::copy(&mut (&mut reader).take(good), &mut std::io::sink()).ok() != Some(good) {
        return Some(inflated);
    }
    let mut byte = [0u8; 1];
    for _ in 0..CHUNK.min(limit - inflated.len()) {
        match reader.read(&mut byte) {
            Ok(1) => inflated.push(byte[0]),
            _ => break,
        }
    }
    Some(inflated)
}

/// The most a deflated data set (one slice) may inflate to: far above any
/// single-frame image (a 4096 × 4096 slice of 32-bit samples is 64 MiB), and
/// the bound on the check's own copy, dropped before dicom-rs inflates the
/// data set again.
/// Under the fuzzer (`cfg(fuzzing)`) it is 64 KiB, four times its largest
/// input: a 12 KB input inflating to 11 MB of empty elements took over 10 s
/// under AddressSanitizer (0.4 s in a release build), work in proportion to
/// the bytes, which libFuzzer counts as a hang; at 1 MiB such inputs still
/// held the target to 400 inputs a second. The check is the same code.
const MAX_INFLATED_DATA_SET: u64 = if cfg!(fuzzing) { 64 << 10 } else { 256 << 20 };

/// Reads a data set with dicom-rs's own reader, as `open` will (the same
/// reader, transfer syntax and options), and refuses the first declared
/// length over `limit` at its header, before the reader reserves it. Its
/// lazy reader was tried first and walks some files differently (an odd
/// length for a UL value: the eager reader reads the whole words, the lazy
/// one skips the length), so an element the eager reader then met went
/// unchecked (found by the `dicom` fuzz target). Values are read, each at
/// most `limit` bytes, and dropped.
fn walk_lengths<R: std::io::Read>(
    source: R,
    ts: &dicom_encoding::TransferSyntax,
    limit: u64,
    too_long: impl Fn(u64) -> DicomError,
) -> Result<(), DicomError> {
    use dicom_parser::dataset::read::{DataSetReader, DataSetReaderOptions};
    use dicom_parser::dataset::DataToken;
    let Ok(reader) = DataSetReader::new_with_ts_options(source, ts, DataSetReaderOptions::default()) else {
        return Ok(());
    };
    for token in reader {
        let Ok(token) = token else { return Ok(()) }; // dicom-rs says why when it opens it
        let declared = match &token {
            DataToken::ElementHeader(h) => h.len.get(),
            DataToken::SequenceStart { len, .. } | DataToken::ItemStart { len } => len.get(),
            _ => None,
        };
        if let Some(length) = declared.filter(|&l| l as u64 > limit) {
            return Err(too_long(length as u64));
        }
    }
    Ok(())
}

/// Rows, Columns, SamplesPerPixel and BitsAllocated, read with the accessors
/// dicom-rs's decoders use (`PixelDataObject`); `None` where one is missing,
/// which the decoder then names.
fn layout(obj: &DefaultDicomObject) -> Option<(u16, u16, u16, u16)> {
    use dicom_encoding::adapters::PixelDataObject;
    Some((obj.rows()?, obj.cols()?, obj.samples_per_pixel()?, obj.bits_allocated()?))
}

/// RLE Lossless's transfer syntax UID.
pub(super) const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// The checks dicom-rs 0.10.1's RLE decoder leaves out: it slices the 64-byte
/// RLE header as its segment count says (a short fragment or a count over 15
/// panics), and copies each decoded segment into the frame by the image's
/// pixel count (a segment that decodes short panics: index out of bounds).
/// The header and the PackBits runs are read here as that decoder reads
/// them, with the same accessors (`PixelDataObject`), so what passes cannot
/// make it panic; the rest of its refusals are its own.
pub(super) fn check_rle(obj: &DefaultDicomObject) -> Result<(), String> {
    use dicom_encoding::adapters::PixelDataObject;
    let Some((rows, columns, samples, bits)) = layout(obj) else {
        return Ok(()); // the decoder names what is missing
    };
    let Some(fragment) = obj.fragment(0) else { return Ok(()) };
    if bits != 8 && bits != 16 {
        return Ok(()); // the decoder refuses it, and says why
    }
    if fragment.len() < 64 {
        return Err(format!("the RLE fragment holds {} bytes, less than its 64-byte header", fragment.len()));
    }
    let word = |at: usize| u32::from_le_bytes([fragment[at], fragment[at + 1], fragment[at + 2], fragment[at + 3]]) as usize;
    let count = word(0);
    if count > 15 {
        return Err(format!("the RLE header declares {count} segments; it has room for 15"));
    }
    let mut offsets: Vec<usize> = (0..count).map(|i| word(4 + 4 * i)).collect();
    offsets.push(fragment.len());
    let pixels = rows as usize * columns as usize;
    let needed = samples as usize * (bits / 8) as usize;
    // Every segment the decoder reads, whatever the others hold: it reads a
    // sample's bytes from the last segment to the first, so a short segment
    // can panic before a bad one is refused (found by the `dicom` fuzz target).
    for (i, ends) in offsets.windows(2).enumerate().take(needed) {
        let Some(segment) = fragment.get(ends[0]..ends[1]) else {
            continue; // the decoder refuses the range
        };
        let Some(decoded) = packbits_length(segment) else {
            continue; // a run cut short: the decoder refuses it
        };
        if decoded < pixels {
            return Err(format!("RLE segment {} decodes to {decoded} bytes for {rows}×{columns} pixels", i + 1));
        }
    }
    Ok(())
}

/// The JPEG transfer syntaxes whose frames dicom-rs decodes with jpeg-decoder
/// (baseline, extended, lossless and its first-order prediction).
pub(super) const JPEG: [&str; 4] = ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"];

/// The check dicom-rs 0.10.1's JPEG adapter leaves out: it sizes its output
/// by the DICOM header (Rows × Columns × samples × bytes) and copies the
/// decoded image in, whatever size the JPEG's own frame header gave it: a
/// larger JPEG panicked (range out of bounds; found by the `dicom` fuzz
/// target). The frame is gathered from the fragments as that adapter does,
/// and jpeg-decoder reads its header (nothing decoded) to give the size.
pub(super) fn check_jpeg(obj: &DefaultDicomObject) -> Result<(), String> {
    use dicom_encoding::adapters::PixelDataObject;
    let Some((rows, columns, samples, bits)) = layout(obj) else {
        return Ok(()); // the adapter names what is missing
    };
    let Some(raw) = obj.raw_pixel_data() else { return Ok(()) };
    let frames = obj.number_of_frames().unwrap_or(1) as usize;
    // Frame 0, as the adapter finds it: the first fragment when there is one
    // per frame, else the fragments from the offset table's first offset to
    // its second (8 bytes of item header between fragments).
    let frame: std::borrow::Cow<[u8]> = if raw.fragments.len() == 1 || raw.fragments.len() == frames {
        match raw.fragments.first() {
            Some(fragment) => fragment.as_slice().into(),
            None => return Ok(()),
        }
    } else {
        let start = raw.offset_table.first().copied().unwrap_or(0) as usize;
        let next = raw.offset_table.get(1).map(|&n| n as usize);
        let (mut offset, mut gathered) = (0usize, Vec::new());
        for fragment in &raw.fragments {
            if offset >= start {
                gathered.extend_from_slice(fragment);
            }
            offset += fragment.len() + 8;
            if next.is_some_and(|n| offset >= n) {
                break;
            }
        }
        gathered.into()
    };
    let mut decoder = jpeg_decoder::Decoder::new(std::io::Cursor::new(&*frame));
    let Some(info) = decoder.read_info().ok().and_then(|_| decoder.info()) else {
        return Ok(()); // the adapter's decoder refuses it, and says why
    };
    let room = samples as usize * (bits as usize / 8) * rows as usize * columns as usize;
    let decoded = info.width as usize * info.height as usize * info.pixel_format.pixel_bytes();
    if decoded > room {
        return Err(format!(
            "the JPEG image holds {} × {} pixels ({:?}), more than the {columns} × {rows} (Columns × Rows) of {bits} bits the DICOM header declares",
            info.width, info.height, info.pixel_format
        ));
    }
    Ok(())
}

/// How many bytes a PackBits segment decodes to, counted as dicom-rs's
/// decoder reads it (a literal run may end with the segment); `None` where
/// a repeat run has no byte to repeat, which that decoder refuses.
fn packbits_length(segment: &[u8]) -> Option<usize> {
    let (mut at, mut length) = (0usize, 0usize);
    while at < segment.len() {
        let header = segment[at] as i8;
        at += 1;
        match header {
            -128 => {}
            -127..=-1 => {
                segment.get(at)?;
                at += 1;
                length += (1 - header as isize) as usize;
            }
            _ => {
                let run = header as usize + 1;
                length += run.min(segment.len() - at);
                at += run;
            }
        }
    }
    Some(length)
}

#[cfg(test)]
mod tests {
    use super::packbits_length;

    #[test]
    fn packbits_runs_count_as_dicom_rs_decodes_them() {
        // A literal run of 3, a repeat of 5, a no-op, a literal of 2.
        assert_eq!(packbits_length(&[2, 1, 2, 3, (-4i8) as u8, 9, 0x80, 1, 7, 8]), Some(3 + 5 + 2));
        // A literal run cut short by the segment's end counts what is there.
        assert_eq!(packbits_length(&[9, 1, 2, 3]), Some(3));
        // A repeat run with no byte to repeat is refused by the decoder.
        assert_eq!(packbits_length(&[(-3i8) as u8]), None);
        assert_eq!(packbits_length(&[]), Some(0));
    }
}
