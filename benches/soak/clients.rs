//! The soak's clients: what they share, the images they upload, and one
//! client's loop over the office's calls, each call recorded with its
//! request id and how it ended.

use super::*;

/// What the clients share: where the server is, the token, the images
/// acknowledged so far (id and stored sha256), the inputs, and when to stop.
pub(crate) struct Shared {
    pub(crate) base: RwLock<String>,
    pub(crate) token: String,
    pub(crate) images: Mutex<Vec<(String, String)>>,
    pub(crate) stop: AtomicBool,
    pub(crate) http: reqwest::Client,
    pub(crate) inputs: Inputs,
}

impl Shared {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.read().expect("base lock"))
    }

    pub(crate) fn some_image(&self, pick: u64) -> Option<(String, String)> {
        let images = self.images.lock().expect("images lock");
        (!images.is_empty()).then(|| images[pick as usize % images.len()].clone())
    }
}

/// The fixtures the uploads are made from.
pub(crate) struct Inputs {
    dicom: Vec<dicom_object::DefaultDicomObject>,
    /// A real CT slice, grown into multi-frame instances.
    ct: dicom_object::DefaultDicomObject,
    jpegs: Vec<Vec<u8>>,
}

impl Inputs {
    pub(crate) fn load() -> Result<Self> {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let mut dicom = Vec::new();
        let mut names: Vec<_> = std::fs::read_dir(fixtures.join("dicom"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
            .collect();
        names.sort();
        for name in names {
            dicom.push(dicom_object::open_file(&name)?);
        }
        let ct = dicom_object::open_file(fixtures.join("dicom/CT_small.dcm"))?;
        let mut jpegs = Vec::new();
        for name in ["camera-plain.jpg", "camera-portrait.jpg", "camera-gps.jpg"] {
            jpegs.push(std::fs::read(fixtures.join("photos").join(name))?);
        }
        Ok(Self { dicom, ct, jpegs })
    }

    /// A distinct real image for upload `n` of `client`: with `megabytes`,
    /// a CT slice grown to that size; else a DICOM fixture with a SOP
    /// Instance UID of its own, or every 4th a JPEG fixture with a comment
    /// of its own.
    fn image(&self, client: usize, n: u64, megabytes: usize) -> Result<(Vec<u8>, &'static str)> {
        let uid = format!("2.25.1{client:03}{n:012}");
        if megabytes == 0 && n % 4 == 3 {
            let jpeg = &self.jpegs[(n / 4) as usize % self.jpegs.len()];
            // The comment goes after SOI and the APPn segments (JFIF, EXIF).
            let mut at = 2;
            while at + 4 <= jpeg.len() && jpeg[at] == 0xFF && (0xE0..=0xEF).contains(&jpeg[at + 1])
            {
                at += 2 + u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]) as usize;
            }
            let comment = format!("soak {uid}");
            let mut out = Vec::with_capacity(jpeg.len() + comment.len() + 4);
            out.extend_from_slice(&jpeg[..at]);
            out.extend_from_slice(&[0xFF, 0xFE]);
            out.extend_from_slice(&((comment.len() + 2) as u16).to_be_bytes());
            out.extend_from_slice(comment.as_bytes());
            out.extend_from_slice(&jpeg[at..]);
            return Ok((out, "image/jpeg"));
        }
        let mut object = if megabytes > 0 {
            support::grown(self.ct.clone(), megabytes)
        } else {
            self.dicom[n as usize % self.dicom.len()].clone()
        };
        support::set_instance_uid(&mut object, &uid);
        let mut out = Vec::new();
        object.write_all(&mut out)?;
        Ok((out, "application/dicom"))
    }
}

/// One call a client made, and how it ended.
#[derive(Debug)]
pub(crate) struct Call {
    pub(crate) request_id: String,
    pub(crate) kind: &'static str,
    pub(crate) outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Answered 2xx: exactly this many audit events are due.
    Answered2xx { events: usize },
    /// Answered with another status: no event is due.
    Refused { status: u16 },
    /// No connection: the server was down.
    Unreached,
    /// Sent, but no answer came (the server was killed): all or nothing.
    Cut { events: usize },
}

impl Outcome {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Outcome::Answered2xx { .. } => "2xx",
            Outcome::Refused { .. } => "refused",
            Outcome::Unreached => "unreached",
            Outcome::Cut { .. } => "cut",
        }
    }
}

/// A client's state: its number, its calls, its case and how full it is.
struct Client {
    shared: Arc<Shared>,
    n: usize,
    seq: u64,
    rng: u64,
    case: Option<String>,
    in_case: usize,
    calls: Vec<Call>,
}

impl Client {
    fn random(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn next_id(&mut self) -> String {
        self.seq += 1;
        format!("soak-{}-{}", self.n, self.seq)
    }

    /// Sends one call, recording it; returns the response when answered 2xx.
    /// `events` says how many audit events a 2xx answer is due (`None`: as
    /// many as the entries of the JSON answer).
    async fn call(
        &mut self,
        kind: &'static str,
        request: reqwest::RequestBuilder,
        events: Option<usize>,
    ) -> Option<(reqwest::StatusCode, reqwest::header::HeaderMap, Vec<u8>)> {
        let request_id = self.next_id();
        let sent = request
            .bearer_auth(&self.shared.token)
            .header("x-request-id", &request_id)
            .send()
            .await;
        let (outcome, answer) = match sent {
            Err(e) if e.is_connect() => (Outcome::Unreached, None),
            Err(_) => (
                Outcome::Cut {
                    events: events.unwrap_or(usize::MAX),
                },
                None,
            ),
            Ok(response) => {
                let status = response.status();
                let headers = response.headers().clone();
                match response.bytes().await {
                    Err(_) => (
                        Outcome::Cut {
                            events: events.unwrap_or(usize::MAX),
                        },
                        None,
                    ),
                    Ok(body) if status.is_success() => {
                        let events = events.unwrap_or_else(|| entries(&body));
                        (
                            Outcome::Answered2xx { events },
                            Some((status, headers, body.to_vec())),
                        )
                    }
                    Ok(_) => (
                        Outcome::Refused {
                            status: status.as_u16(),
                        },
                        None,
                    ),
                }
            }
        };
        self.calls.push(Call {
            request_id,
            kind,
            outcome,
        });
        if answer.is_none() && !matches!(outcome, Outcome::Refused { .. }) {
            // The server is down or restarting.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        answer
    }

    async fn case(&mut self) -> Option<String> {
        if self.case.is_none() || self.in_case >= IMAGES_PER_CASE {
            let body = json!({
                "patient": {"name": "Soak Test", "birth_date": "1970-01-02", "sex": "female", "mrn": format!("SOAK-{}", self.n)},
                "specialty": "radiology", "priority": "routine",
                "question": "Soak: images, reads and lists under restarts."
            });
            let url = self.shared.url("/api/v1/cases");
            let request = self.shared.http.post(url).json(&body);
            let (_, _, body) = self.call("case.create", request, Some(1)).await?;
            let case: Value = serde_json::from_slice(&body).ok()?;
            self.case = Some(case["id"].as_str()?.to_owned());
            self.in_case = 0;
        }
        self.case.clone()
    }

    fn acknowledged(&mut self, image: &str, sha256: &str) {
        self.in_case += 1;
        self.shared
            .images
            .lock()
            .expect("images lock")
            .push((image.to_owned(), sha256.to_owned()));
    }

    async fn upload(&mut self) -> Result<()> {
        let Some(case) = self.case().await else {
            return Ok(());
        };
        let grown = if self.seq.is_multiple_of(50) { 2 } else { 0 };
        let (bytes, media_type) = self.shared.inputs.image(self.n, self.seq, grown)?;
        let url = self
            .shared
            .url(&format!("/api/v1/cases/{case}/images?filename=soak"));
        let request = self
            .shared
            .http
            .post(url)
            .header("content-type", media_type)
            .body(bytes);
        if let Some((_, _, body)) = self.call("image.upload", request, Some(1)).await {
            let receipt: Value = serde_json::from_slice(&body)?;
            let id = receipt["id"].as_str().ok_or("receipt without id")?;
            let sha = receipt["stored_sha256"]
                .as_str()
                .ok_or("no stored_sha256")?;
            self.acknowledged(id, sha);
        }
        Ok(())
    }

    /// A resumable upload in chunks; after a cut or a refused connection it
    /// asks `HEAD` where the upload stands and goes on from there.
    async fn tus(&mut self) -> Result<()> {
        let Some(case) = self.case().await else {
            return Ok(());
        };
        let grown = if self.seq.is_multiple_of(10) { 1 } else { 0 };
        let (bytes, media_type) = self.shared.inputs.image(self.n, self.seq, grown)?;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let metadata = format!(
            "case {},filename {},filetype {}",
            b64(&case),
            b64(if media_type == "image/jpeg" {
                "soak.jpg"
            } else {
                "soak.dcm"
            }),
            b64(media_type)
        );
        let request = self
            .shared
            .http
            .post(self.shared.url("/api/v1/uploads"))
            .header("tus-resumable", "1.0.0")
            .header("upload-length", bytes.len().to_string())
            .header("upload-metadata", metadata);
        let Some((_, headers, _)) = self.call("upload.start", request, Some(1)).await else {
            return Ok(());
        };
        let location = header(&headers, "location").ok_or("no Location")?;
        let chunk = bytes.len().div_ceil(TUS_CHUNKS);
        let mut offset = 0;
        for _attempt in 0..200 {
            if self.shared.stop.load(Ordering::SeqCst) && offset == 0 {
                return Ok(());
            }
            let end = (offset + chunk).min(bytes.len());
            let last = end == bytes.len();
            let request = self
                .shared
                .http
                .patch(self.shared.url(&location))
                .header("tus-resumable", "1.0.0")
                .header("upload-offset", offset.to_string())
                .header("content-type", "application/offset+octet-stream")
                .body(bytes[offset..end].to_vec());
            let events = if last { 2 } else { 1 };
            match self.call("upload.append", request, Some(events)).await {
                Some((_, headers, _)) if last => {
                    let image = header(&headers, "location").ok_or("no image Location")?;
                    let digest = header(&headers, "content-digest").ok_or("no digest")?;
                    let id = image.rsplit('/').next().unwrap_or_default().to_owned();
                    self.acknowledged(&id, &digest_hex(&digest)?);
                    return Ok(());
                }
                Some(_) => offset = end,
                None => {
                    if matches!(
                        self.calls.last().map(|c| c.outcome),
                        Some(Outcome::Refused { .. })
                    ) {
                        return Ok(()); // counted; the check reports it
                    }
                    // Where does it stand? (HEAD leaves no audit event.)
                    let request = self
                        .shared
                        .http
                        .head(self.shared.url(&location))
                        .header("tus-resumable", "1.0.0");
                    if let Some((_, headers, _)) = self.call("upload.head", request, Some(0)).await
                    {
                        if let Some(image) = header(&headers, "relay-image") {
                            // The last chunk had been taken before the kill.
                            let id = image.rsplit('/').next().unwrap_or_default().to_owned();
                            let sha = hex::encode(Sha256::digest(&bytes));
                            self.acknowledged(&id, &sha);
                            return Ok(());
                        }
                        offset = header(&headers, "upload-offset")
                            .and_then(|o| o.parse().ok())
                            .ok_or("HEAD without Upload-Offset")?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn step(&mut self) -> Result<()> {
        let pick = self.random();
        match pick % 100 {
            0..30 => self.upload().await,
            30..38 => self.tus().await,
            38..63 => {
                if let Some((image, sha)) = self.shared.some_image(pick >> 8) {
                    let url = self.shared.url(&format!("/api/v1/images/{image}/original"));
                    let request = self.shared.http.get(url);
                    if let Some((_, _, body)) = self.call("image.original", request, Some(1)).await
                        && hex::encode(Sha256::digest(&body)) != sha
                    {
                        return Err(format!("image {image}: the bytes served are not {sha}").into());
                    }
                }
                Ok(())
            }
            63..75 => {
                if let Some((image, _)) = self.shared.some_image(pick >> 8) {
                    let url = self.shared.url(&format!("/api/v1/images/{image}"));
                    let request = self.shared.http.get(url);
                    self.call("image.read", request, Some(1)).await;
                }
                Ok(())
            }
            75..90 => {
                if let Some(case) = self.case().await {
                    let url = self.shared.url(&format!("/api/v1/cases/{case}"));
                    let request = self.shared.http.get(url);
                    self.call("case.read", request, Some(1)).await;
                }
                Ok(())
            }
            _ => {
                let url = self.shared.url("/api/v1/cases?per_page=10");
                let request = self.shared.http.get(url);
                self.call("case.list", request, None).await;
                Ok(())
            }
        }
    }
}

pub(crate) async fn client(shared: Arc<Shared>, n: usize) -> Vec<Call> {
    let mut client = Client {
        shared,
        n,
        seq: 0,
        rng: 0x9E37_79B9_7F4A_7C15 ^ (n as u64 + 1).wrapping_mul(0x1000_0000_01B3),
        case: None,
        in_case: 0,
        calls: Vec::new(),
    };
    while !client.shared.stop.load(Ordering::SeqCst) {
        if let Err(e) = client.step().await {
            eprintln!("soak: client {n}: {e}");
            client.calls.push(Call {
                request_id: String::new(),
                kind: CLIENT_ERROR,
                outcome: Outcome::Refused { status: 0 },
            });
        }
    }
    client.calls
}

fn header(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_owned)
}

/// `sha-256=:<base64>:` as hex.
fn digest_hex(header: &str) -> Result<String> {
    let b64 = header
        .strip_prefix("sha-256=:")
        .and_then(|s| s.strip_suffix(':'))
        .ok_or("not a sha-256 Content-Digest")?;
    Ok(hex::encode(
        base64::engine::general_purpose::STANDARD.decode(b64)?,
    ))
}

/// The entries of a list answer: `items` or the array itself.
fn entries(body: &[u8]) -> usize {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return 0;
    };
    value["items"]
        .as_array()
        .or_else(|| value.as_array())
        .map_or(0, Vec::len)
}
