//! quant-awq's tests: the scale grid, the grid search and the clip search against a NumPy port
//! of llm-awq (`scripts/reference/awq.py`), on a host-matrix block implementing [`BlockOps`].

use std::collections::BTreeMap;

use compress_core::oneshot::{BlockOps, InputStats, SmoothKind, SmoothMapping};
use compress_core::{AlgorithmEntry, AlgorithmKind, CompressError, Dense, Result};
use compress_quant::rtn::{Quantizer, Strategy, WeightScheme};

use super::*;

/// Printed by `python3 scripts/reference/awq.py` (seed 7).
#[allow(clippy::excessive_precision, clippy::unreadable_literal)]
mod reference {
    pub const GRID_A050: [f32; 4] = [
        42.04481887817383,
        84.08963775634766,
        168.1792755126953,
        0.005946035496890545,
    ];
    pub const GRID_A025: [f32; 4] = [
        64.84197998046875,
        91.70040130615234,
        129.6839599609375,
        0.007711054291576147,
    ];
    pub const GRID_DUO050: [f32; 4] = [
        59.45492172241211,
        168.15406799316406,
        168.17086791992188,
        0.0059463330544531345,
    ];
    pub const R: [f32; 256] = [
        0.001230153371579945,
        0.2987455427646637,
        -3.28965425491333,
        -0.8905918598175049,
        -0.2273353934288025,
        -0.9916465282440186,
        0.3608616292476654,
        1.3402152061462402,
        -0.49220651388168335,
        -0.6204748749732971,
        5.8781046867370605,
        0.35688701272010803,
        0.05270712450146675,
        -0.9304680228233337,
        -0.1755109280347824,
        0.695303201675415,
        -1.3442145586013794,
        -0.45761576294898987,
        -22.814672470092773,
        -1.289537787437439,
        -0.9208675026893616,
        -0.23509113490581512,
        -7.604679107666016,
        0.27126434445381165,
        0.15675108134746552,
        -0.18693093955516815,
        -30.20111656188965,
        -0.5386928915977478,
        -0.024250471964478493,
        0.11330898851156235,
        -9.180814743041992,
        -0.47775328159332275,
        -0.978519082069397,
        -0.8088372349739075,
        12.730783462524414,
        -0.8075346946716309,
        -0.01626085303723812,
        0.8843898773193359,
        -3.5016026496887207,
        -0.11170195043087006,
        0.11046414077281952,
        0.06378177553415298,
        -14.70067024230957,
        0.07614023238420486,
        0.6794117093086243,
        -1.5471446514129639,
        5.156296253204346,
        0.11935402452945709,
        -0.6414703726768494,
        2.0004165172576904,
        9.147116661071777,
        -1.1992888450622559,
        0.03725811466574669,
        0.576689600944519,
        -1.1326926946640015,
        0.6829102635383606,
        -0.06651732325553894,
        0.6672475337982178,
        17.262271881103516,
        -0.6756622791290283,
        0.10156930238008499,
        -0.46330758929252625,
        0.7636104822158813,
        -1.187194585800171,
        -0.5793015956878662,
        -0.19619597494602203,
        10.78516674041748,
        1.1452219486236572,
        -0.6617639064788818,
        -0.7946423888206482,
        3.881420612335205,
        -1.9924198389053345,
        -0.4631698727607727,
        -0.09728692471981049,
        15.084179878234863,
        0.6894038915634155,
        -0.1636067032814026,
        -0.36857590079307556,
        -1.501172423362732,
        1.5235294103622437,
        -0.42802494764328003,
        -0.3036803901195526,
        4.2310686111450195,
        -0.12077044695615768,
        -0.09864211082458496,
        -1.1140671968460083,
        -0.06912881135940552,
        -0.443581223487854,
        1.1661278009414673,
        0.6530885100364685,
        -0.28972336649894714,
        0.6683810353279114,
        -0.16993477940559387,
        1.052126407623291,
        -0.03239736333489418,
        0.5833823680877686,
        -1.2908931970596313,
        0.34668004512786865,
        -20.25844955444336,
        -2.0353288650512695,
        -0.15223844349384308,
        -0.8999276161193848,
        0.9843167662620544,
        2.2447566986083984,
        -0.831723153591156,
        -0.623943567276001,
        2.4648473262786865,
        0.49301329255104065,
        -0.08820303529500961,
        -0.20593033730983734,
        4.214777946472168,
        0.5199076533317566,
        -1.0336757898330688,
        -0.07918132096529007,
        0.42344218492507935,
        -1.0544846057891846,
        0.12991954386234283,
        -0.8579564690589905,
        5.832400321960449,
        0.19274590909481049,
        0.08930648863315582,
        -0.5910283327102661,
        -1.4233179092407227,
        -1.9977463483810425,
        -0.5657037496566772,
        0.36283978819847107,
        -12.771402359008789,
        0.8466085195541382,
        -1.7460964918136597,
        0.7567384839057922,
        -10.145964622497559,
        0.7789911031723022,
        0.06547560542821884,
        -1.536834955215454,
        7.494892597198486,
        1.4417071342468262,
        -0.06580490618944168,
        -0.2739162743091583,
        -1.9184036254882812,
        -0.975152313709259,
        0.5492933988571167,
        -0.5428919196128845,
        -0.3071424663066864,
        -0.7932963967323303,
        -0.6260731220245361,
        -1.277725100517273,
        15.084832191467285,
        -0.15408757328987122,
        0.4829608201980591,
        0.013324596919119358,
        -4.166420936584473,
        -0.32668524980545044,
        -0.5602310299873352,
        0.007959099486470222,
        -4.503201961517334,
        -0.2999217212200165,
        -0.6892873644828796,
        -0.8068459033966064,
        9.924345016479492,
        -0.6712332367897034,
        -1.054093837738037,
        0.337326318025589,
        16.887266159057617,
        -1.454024314880371,
        -0.10426092147827148,
        -0.6320525407791138,
        -10.566117286682129,
        0.734926700592041,
        -0.02344391867518425,
        0.07144184410572052,
        -9.027737617492676,
        0.4547841548919678,
        -0.2696486711502075,
        -0.14290320873260498,
        -6.649564743041992,
        -1.2161027193069458,
        1.3355318307876587,
        -0.5071046948432922,
        3.500164270401001,
        -0.03379043564200401,
        -0.2205726057291031,
        -0.5079609751701355,
        3.7804956436157227,
        -0.30186760425567627,
        -0.15144364535808563,
        0.022221557796001434,
        14.1181001663208,
        0.6805109977722168,
        0.1913001388311386,
        -0.5635713934898376,
        -8.2918119430542,
        0.9495299458503723,
        0.966447114944458,
        -0.14070840179920197,
        6.50260591506958,
        0.7814430594444275,
        0.415592223405838,
        0.9213835000991821,
        -2.733705997467041,
        1.5149729251861572,
        -1.2465931177139282,
        0.8617230653762817,
        5.92718505859375,
        0.8736191391944885,
        0.9395041465759277,
        1.4844454526901245,
        -6.871061325073242,
        -1.688671588897705,
        0.8168890476226807,
        -1.0150123834609985,
        -0.14886465668678284,
        0.8397274613380432,
        -0.8218986988067627,
        -2.109980344772339,
        1.5557941198349,
        0.044385891407728195,
        -0.2458030730485916,
        0.03853476420044899,
        -10.326187133789062,
        -1.5134943723678589,
        -0.08332742750644684,
        -0.9717087149620056,
        -9.86088752746582,
        0.5056810975074768,
        -0.06139862909913063,
        0.4065285325050354,
        -11.871539115905762,
        -0.658058762550354,
        -0.49952152371406555,
        -0.8866418600082397,
        1.1724475622177124,
        -0.7829746007919312,
        0.3560662865638733,
        0.33975592255592346,
        24.301931381225586,
        -1.3927890062332153,
        0.44395118951797485,
        -0.0894879624247551,
        -0.0841783806681633,
        -1.4498637914657593,
        -0.46019381284713745,
        0.7431972622871399,
        -0.9897404909133911,
        0.08105436712503433,
        -0.14535833895206451,
        1.1545697450637817,
        -0.12883539497852325,
        -2.20041561126709,
        -0.6920725703239441,
        -1.9687966108322144,
        -39.01726150512695,
        -0.5301153659820557,
        0.6667799353599548,
        0.047119904309511185,
        -7.035274028778076,
        -0.9406998753547668,
    ];
    pub const GAMMA: [f32; 8] = [
        1.3391839265823364,
        1.047287940979004,
        1.014399766921997,
        0.9839614629745483,
        1.0115200281143188,
        1.241621732711792,
        1.165770173072815,
        1.0647114515304565,
    ];
    pub const WQ: [f32; 32] = [
        -0.5214341878890991,
        0.2555543780326843,
        -0.34212353825569153,
        0.5469228625297546,
        -0.6355254054069519,
        -0.06881048530340195,
        -0.0036791430320590734,
        -0.6623227596282959,
        0.8609858155250549,
        0.73020339012146,
        -0.2317918837070465,
        0.3858605921268463,
        0.18933802843093872,
        -1.3067797422409058,
        0.12519900500774384,
        -0.030672039836645126,
        0.04160867631435394,
        -0.5384374856948853,
        -0.13467352092266083,
        -0.08912938088178635,
        0.5940471291542053,
        0.1672135293483734,
        -0.002777515212073922,
        0.7644850015640259,
        -0.2776239514350891,
        -0.19471515715122223,
        -0.9083775281906128,
        0.7845529317855835,
        0.4821661710739136,
        0.45842403173446655,
        0.33444923162460327,
        0.055074293166399,
    ];
    pub const WV: [f32; 64] = [
        0.10774447023868561,
        -0.12600329518318176,
        -0.10180021077394485,
        0.0271518062800169,
        0.7559147477149963,
        0.2778439521789551,
        -0.029230063781142235,
        -0.2896960377693176,
        -0.3174992501735687,
        0.8013525009155273,
        0.2533436417579651,
        0.03377527743577957,
        -0.17309091985225677,
        -0.554526686668396,
        -0.03343077749013901,
        0.4368290305137634,
        -0.19626861810684204,
        -0.1136212944984436,
        -0.11051717400550842,
        0.054797183722257614,
        -0.7965054512023926,
        -0.11769917607307434,
        -0.42719775438308716,
        0.4422925114631653,
        -0.38529932498931885,
        0.2885233759880066,
        0.762218713760376,
        -0.1567981243133545,
        -0.30078813433647156,
        0.09571612626314163,
        -0.001014513778500259,
        -0.49680817127227783,
        0.23045970499515533,
        1.0077580213546753,
        -0.12905599176883698,
        -0.10143809765577316,
        -0.5224660038948059,
        0.1595442295074463,
        -0.6234881281852722,
        -0.5534654855728149,
        0.6398336291313171,
        -0.4527265429496765,
        0.5406787991523743,
        0.7621790170669556,
        0.12966322898864746,
        0.27669569849967957,
        0.9761254787445068,
        -0.0983642041683197,
        -0.29650288820266724,
        -0.6766155362129211,
        0.020853539928793907,
        0.7395721077919006,
        0.47979769110679626,
        -0.4710456132888794,
        -0.42768770456314087,
        -0.2520856261253357,
        0.14613403379917145,
        -0.10265571624040604,
        0.10722697526216507,
        0.1483696848154068,
        -0.14938679337501526,
        -0.020086970180273056,
        0.1032961905002594,
        -0.04198485240340233,
    ];
    pub const WO: [f32; 48] = [
        0.25176042318344116,
        0.9354378581047058,
        0.295986145734787,
        0.02790527231991291,
        -0.8430593013763428,
        0.19397854804992676,
        -0.9733392000198364,
        -0.7045170664787292,
        0.42731961607933044,
        0.35311752557754517,
        -0.07496950030326843,
        -0.8550055623054504,
        -0.1856742650270462,
        -0.33936914801597595,
        0.3184203803539276,
        1.1288652420043945,
        0.10846524685621262,
        -0.38965556025505066,
        -0.5852757692337036,
        -0.028047140687704086,
        -0.0883965939283371,
        -0.5757595896720886,
        0.05817761644721031,
        -0.5754567384719849,
        0.556053638458252,
        0.5313252806663513,
        0.5423756241798401,
        -0.23702523112297058,
        0.2572602927684784,
        -0.06603474915027618,
        -0.19440603256225586,
        -0.1695728302001953,
        -0.6498576402664185,
        -0.7219318747520447,
        0.3971574008464813,
        -0.09561770409345627,
        0.1082124263048172,
        0.5008552074432373,
        -0.8665662407875061,
        -0.39206504821777344,
        0.08766742050647736,
        0.19604739546775818,
        -0.18853722512722015,
        0.5145896077156067,
        0.1051974669098854,
        -0.6066910624504089,
        -0.4653818905353546,
        0.40273553133010864,
    ];
    pub const LOSSES: [f64; 20] = [
        0.02410786568433874,
        0.02336008781730276,
        0.010449432827690789,
        0.011271404905885699,
        0.021753216147207332,
        0.012723432861865258,
        0.011277418514010387,
        0.014430535993789887,
        0.012185812329844512,
        0.014832382491494645,
        0.017381777054653012,
        0.015054021931642476,
        0.01245631901199566,
        0.009524453693501578,
        0.010573980267133798,
        0.011150154130290201,
        0.016571893947392825,
        0.01627069211591556,
        0.019429481342265853,
        0.02100502321889828,
    ];
    pub const SCALES: [f32; 8] = [
        0.7471082210540771,
        0.5649950504302979,
        2.5290563106536865,
        0.6439899206161499,
        0.3954043984413147,
        0.8882526755332947,
        1.7251062393188477,
        0.7840253710746765,
    ];
    pub const CLIP_W: [f32; 16] = [
        0.46383145451545715,
        4.0,
        1.3477122783660889,
        0.5980270504951477,
        1.3433430194854736,
        -0.3837008774280548,
        -0.29570621252059937,
        -1.1264570951461792,
        2.5369296073913574,
        -0.17545422911643982,
        1.5875332355499268,
        -0.64729243516922,
        0.16384118795394897,
        -1.671352505683899,
        -3.5,
        0.9837549328804016,
    ];
    pub const CLIP_X: [f32; 96] = [
        -1.2517437934875488,
        0.053611379116773605,
        0.33723780512809753,
        -1.0439509153366089,
        -0.5015972852706909,
        -0.45906567573547363,
        -0.0024759669322520494,
        -0.536143958568573,
        -0.8272879123687744,
        -0.015229384414851665,
        -1.026889681816101,
        -1.2895265817642212,
        -0.04817648231983185,
        0.8828742504119873,
        -0.0764685869216919,
        0.0035081515088677406,
        -0.6499561667442322,
        -0.048857271671295166,
        0.8534376621246338,
        -0.5181697010993958,
        1.49830162525177,
        -0.7798393368721008,
        0.019325099885463715,
        -0.22728300094604492,
        -0.7540218234062195,
        0.02938375249505043,
        -0.1549825668334961,
        0.6032105684280396,
        -0.047291506081819534,
        -1.0858162641525269,
        -0.005103462375700474,
        0.051955170929431915,
        0.9584629535675049,
        -0.04531345143914223,
        -0.039329852908849716,
        -1.7218787670135498,
        0.6514930725097656,
        -1.081483006477356,
        -0.0903179794549942,
        -0.05921683460474014,
        1.1056849956512451,
        -0.07622235268354416,
        -1.0880355834960938,
        -0.7432748675346375,
        -1.129496693611145,
        0.37942788004875183,
        -0.040368374437093735,
        -0.7215147614479065,
        0.5833054184913635,
        -0.037775732576847076,
        0.43278008699417114,
        -0.9713851809501648,
        -1.2121385335922241,
        -1.8354493379592896,
        0.09306014329195023,
        -0.3202590346336365,
        0.24393336474895477,
        -0.001552475499920547,
        0.1599617600440979,
        0.049686480313539505,
        1.9082170724868774,
        -1.038926601409912,
        -0.0778731033205986,
        -1.0119596719741821,
        -1.3347090482711792,
        0.037348102778196335,
        0.8203781843185425,
        -0.9613155722618103,
        -1.390435814857483,
        -0.3547966480255127,
        0.06955619901418686,
        -2.8195693492889404,
        0.5266267657279968,
        -0.05378776416182518,
        1.0403671264648438,
        -1.0779238939285278,
        -0.2854158282279968,
        -1.5062791109085083,
        -0.048862893134355545,
        1.3858391046524048,
        0.8205786943435669,
        -0.020083408802747726,
        -0.870172381401062,
        -1.8938071727752686,
        -0.3936567008495331,
        -0.030903251841664314,
        -0.004202717915177345,
        -0.09379192441701889,
        -1.1218096017837524,
        -0.0033136941492557526,
        -0.03867337852716446,
        1.2905620336532593,
        1.866733431816101,
        -0.136989027261734,
        -0.0383152961730957,
        -0.06498213112354279,
    ];
    pub const CLIP_MAX_G4: [f32; 4] = [
        2.200000047683716,
        1.3433430194854736,
        2.410083055496216,
        2.799999952316284,
    ];
    pub const CLIP_MAX_G8: [f32; 2] = [2.200000047683716, 3.325000047683716];
    pub const CLIP_ORG_G4: [f32; 4] = [4.0, 1.3433430194854736, 2.5369296073913574, 3.5];
}
use reference::*;

/// The reference's grid: 3-bit asymmetric, groups of 4 (small enough that the search matters).
fn scheme(group: usize) -> WeightScheme {
    WeightScheme {
        quantizer: Quantizer::new(3, false),
        strategy: Strategy::Group(group),
    }
}

fn close(got: f64, want: f64, rel: f64) -> bool {
    (got - want).abs() <= rel * want.abs().max(1e-12)
}

/// `x [rows, d_in] @ w^T` in f64.
fn matmul_t(x: &[f32], w: &Dense<f32>) -> Vec<f64> {
    let (out, d_in) = (w.shape()[0], w.shape()[1]);
    x.chunks(d_in)
        .flat_map(|row| {
            (0..out).map(move |o| {
                row.iter()
                    .zip(&w.data()[o * d_in..(o + 1) * d_in])
                    .map(|(&a, &b)| f64::from(a) * f64::from(b))
                    .sum::<f64>()
            })
        })
        .collect()
}

/// The reference's block on host matrices: `h = rmsnorm(r) * gamma`, `q = h Wq^T`,
/// `v = h Wv^T`, `o = v Wo^T`; scope `self_attn` is `[q | o]`, scope `self_attn.o_proj` is `o`.
struct HostBlock {
    r: Vec<f32>,
    d: usize,
    gamma: Vec<f32>,
    linears: BTreeMap<String, Dense<f32>>,
    mappings: Vec<SmoothMapping>,
    stats: BTreeMap<String, InputStats>,
    fp: BTreeMap<String, Vec<f64>>,
    /// Every loss comes back NaN (a block whose forward overflows).
    poison: bool,
}

const Q: &str = "self_attn.q_proj";
const V: &str = "self_attn.v_proj";
const O: &str = "self_attn.o_proj";

impl HostBlock {
    fn new() -> Self {
        let linears = BTreeMap::from([
            (Q.to_string(), Dense::new(vec![4, 8], WQ.to_vec())),
            (V.to_string(), Dense::new(vec![8, 8], WV.to_vec())),
            (O.to_string(), Dense::new(vec![6, 8], WO.to_vec())),
        ]);
        let mappings = vec![
            SmoothMapping {
                smooth: "input_layernorm".into(),
                kind: SmoothKind::Norm,
                balance: vec![Q.into(), V.into()],
                inspect: "self_attn".into(),
            },
            SmoothMapping {
                smooth: V.into(),
                kind: SmoothKind::Linear,
                balance: vec![O.into()],
                inspect: O.into(),
            },
        ];
        let mut block = Self {
            r: R.to_vec(),
            d: 8,
            gamma: GAMMA.to_vec(),
            linears,
            mappings,
            stats: BTreeMap::new(),
            fp: BTreeMap::new(),
            poison: false,
        };
        let abs_mean = |x: &[f32], d: usize| -> Vec<f64> {
            let rows = (x.len() / d) as f64;
            (0..d)
                .map(|j| {
                    x.iter()
                        .skip(j)
                        .step_by(d)
                        .map(|v| f64::from(v.abs()))
                        .sum::<f64>()
                        / rows
                })
                .collect()
        };
        let (h, v) = (block.h(), block.v(&[]));
        for (name, x) in [(Q, &h), (V, &h), (O, &v)] {
            let stats = InputStats {
                samples: 1,
                tokens: 32,
                abs_mean: Some(abs_mean(x, 8)),
                ..InputStats::default()
            };
            block.stats.insert(name.into(), stats);
        }
        for scope in ["self_attn", O] {
            let out = block.scope(scope, &[]).unwrap();
            block.fp.insert(scope.into(), out);
        }
        block
    }

    /// `rmsnorm(r) * gamma`, f64 then rounded to f32 (as the script).
    fn h(&self) -> Vec<f32> {
        self.r
            .chunks(self.d)
            .flat_map(|row| {
                let ms = row
                    .iter()
                    .map(|&v| f64::from(v) * f64::from(v))
                    .sum::<f64>()
                    / self.d as f64;
                let inv = 1.0 / (ms + 1e-6).sqrt();
                row.iter()
                    .zip(&self.gamma)
                    .map(move |(&v, &g)| (f64::from(v) * inv * f64::from(g)) as f32)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn w<'a>(&'a self, name: &str, over: &'a [(String, Dense<f32>)]) -> &'a Dense<f32> {
        over.iter()
            .find(|(n, _)| n == name)
            .map_or(&self.linears[name], |(_, w)| w)
    }

    fn v(&self, over: &[(String, Dense<f32>)]) -> Vec<f32> {
        matmul_t(&self.h(), self.w(V, over))
            .iter()
            .map(|&x| x as f32)
            .collect()
    }

    fn scope(&self, scope: &str, over: &[(String, Dense<f32>)]) -> Result<Vec<f64>> {
        let o = matmul_t(&self.v(over), self.w(O, over));
        match scope {
            "self_attn" => {
                let mut q = matmul_t(&self.h(), self.w(Q, over));
                q.extend(o);
                Ok(q)
            }
            O => Ok(o),
            _ => Err(CompressError::Algorithm {
                algorithm: "test".into(),
                message: format!("unknown scope '{scope}'"),
            }),
        }
    }

    /// The block's input tokens of a Linear.
    fn inputs_of(&self, linear: &str) -> Vec<f32> {
        if linear == O { self.v(&[]) } else { self.h() }
    }
}

fn unknown(name: &str) -> CompressError {
    CompressError::Algorithm {
        algorithm: "test".into(),
        message: format!("unknown Linear '{name}'"),
    }
}

impl BlockOps for HostBlock {
    fn index(&self) -> usize {
        0
    }
    fn path(&self) -> &str {
        "model.layers.0"
    }
    fn mappings(&self) -> &[SmoothMapping] {
        &self.mappings
    }
    fn linears(&self) -> Vec<String> {
        // Block order, as the engine lists them.
        [Q, V, O]
            .into_iter()
            .filter(|l| self.linears.contains_key(*l))
            .map(String::from)
            .collect()
    }
    fn stats(&self, linear: &str) -> Result<&InputStats> {
        self.stats.get(linear).ok_or_else(|| unknown(linear))
    }
    fn weight(&self, linear: &str) -> Result<Dense<f32>> {
        self.linears
            .get(linear)
            .cloned()
            .ok_or_else(|| unknown(linear))
    }
    fn set_weight(&mut self, linear: &str, weight: Dense<f32>) -> Result<()> {
        let slot = self
            .linears
            .get_mut(linear)
            .ok_or_else(|| unknown(linear))?;
        assert_eq!(slot.shape(), weight.shape());
        *slot = weight;
        Ok(())
    }
    fn fold_scales(&mut self, mapping: &SmoothMapping, scales: &[f32]) -> Result<()> {
        assert!(
            scales.iter().all(|s| s.is_finite() && *s > 0.0),
            "{scales:?}"
        );
        match mapping.kind {
            SmoothKind::Norm => self.gamma.iter_mut().zip(scales).for_each(|(g, s)| *g /= s),
            SmoothKind::Linear => {
                let w = self.linears.get_mut(&mapping.smooth).unwrap();
                let d_in = w.shape()[1];
                for (row, s) in w.data_mut().chunks_mut(d_in).zip(scales) {
                    row.iter_mut().for_each(|v| *v /= s);
                }
            }
        }
        for b in &mapping.balance {
            let w = self.linears.get_mut(b).unwrap();
            for row in w.data_mut().chunks_mut(scales.len()) {
                row.iter_mut().zip(scales).for_each(|(v, s)| *v *= s);
            }
            let mean = self.stats.get_mut(b).unwrap().abs_mean.as_mut().unwrap();
            mean.iter_mut()
                .zip(scales)
                .for_each(|(m, &s)| *m /= f64::from(s));
        }
        Ok(())
    }
    fn inspect_error(&mut self, scope: &str, overrides: &[(String, Dense<f32>)]) -> Result<f64> {
        if self.poison {
            return Ok(f64::NAN);
        }
        let out = self.scope(scope, overrides)?;
        let fp = &self.fp[scope];
        Ok(out
            .iter()
            .zip(fp)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            / out.len() as f64)
    }
    fn input_tokens(&self, linear: &str, max_tokens: usize) -> Result<Dense<f32>> {
        let x = self.inputs_of(linear);
        let tokens = x.len() / self.d;
        let stride = tokens.div_ceil(max_tokens).max(1);
        let rows: Vec<f32> = x
            .chunks(self.d)
            .step_by(stride)
            .flatten()
            .copied()
            .collect();
        Ok(Dense::new(vec![rows.len() / self.d, self.d], rows))
    }
}

/// By hand for alpha 0.5: `sqrt([0.5, 2, 8, 0])` = `[0.7071, 1.4142, 2.8284, 0]`, the 0 clamped
/// to 1e-4, normalised by `sqrt(2.8284 * 1e-4)` = 0.016818; the script prints the same values.
#[test]
fn the_normalised_scale_grid_matches_llm_awq() {
    let s_x = [0.5, 2.0, 8.0, 0.0];
    assert_eq!(grid_scales(&s_x, 0.0, None), [1.0; 4]);
    for (alpha, want) in [(0.5, GRID_A050), (0.25, GRID_A025)] {
        let got = grid_scales(&s_x, alpha, None);
        for (g, w) in got.iter().zip(want) {
            assert!(
                close(f64::from(*g), f64::from(w), 1e-6),
                "alpha {alpha}: {got:?}"
            );
        }
    }
    assert!(
        (grid_scales(&s_x, 0.5, None)[0] - std::f32::consts::FRAC_1_SQRT_2 / 0.016_817_93).abs()
            < 1e-3
    );
    let duo = grid_scales(&s_x, 0.5, Some(&[0.5, 0.25, 1.0, 0.75]));
    for (g, w) in duo.iter().zip(GRID_DUO050) {
        assert!(close(f64::from(*g), f64::from(w), 1e-6), "duo: {duo:?}");
    }
}

/// By hand: groups of 2; row [1, -2] over its max 2 is [0.5, 1], row [0.5, 0.25] over 0.5 is
/// [1, 0.5], the second weight's row [0, 4] is [0, 1]; means over the three rows
/// [0.5, 0.8333] (llm-compressor's `+ 1e-6` in each denominator).
#[test]
fn duo_scaling_weight_means_are_group_normalised_row_means() {
    let a = Dense::new(vec![2, 2], vec![1.0, -2.0, 0.5, 0.25]);
    let b = Dense::new(vec![1, 2], vec![0.0, 4.0]);
    let m = weight_means(&[a, b], 2);
    assert!(
        (m[0] - 0.5).abs() < 1e-6 && (m[1] - 2.5 / 3.0).abs() < 1e-6,
        "{m:?}"
    );
    // The search with duo scaling keeps one of the duo grid's points.
    let mut block = HostBlock::new();
    let mapping = block.mappings[0].clone();
    let s_x = block.stats[Q].abs_mean.clone().unwrap();
    let w_mean = weight_means(&[block.weight(Q).unwrap(), block.weight(V).unwrap()], 4);
    let duo = search_scales(&mut block, &mapping, &scheme(4), 20, true).unwrap();
    assert!(duo.losses.iter().all(|l| l.is_finite()));
    assert_eq!(duo.scales, grid_scales(&s_x, duo.alpha, Some(&w_mean)));
    assert_ne!(grid_scales(&s_x, 0.0, Some(&w_mean)), [1.0; 8]);
}

#[test]
fn the_grid_search_keeps_the_reference_alpha_and_losses() {
    let mut block = HostBlock::new();
    let mapping = block.mappings[0].clone();
    let choice = search_scales(&mut block, &mapping, &scheme(4), 20, false).unwrap();
    assert_eq!(choice.alpha, 0.65);
    assert_eq!(choice.losses.len(), 20);
    for (k, (got, want)) in choice.losses.iter().zip(LOSSES).enumerate() {
        assert!(
            close(*got, want, 1e-6),
            "alpha {}: {got} vs {want}",
            k as f64 / 20.0
        );
    }
    assert!(close(choice.loss, LOSSES[13], 1e-6));
    // alpha 0 is plain round-to-nearest: the search more than halves its error here.
    assert!(choice.loss < 0.5 * choice.losses[0], "{:?}", choice.losses);
    for (g, w) in choice.scales.iter().zip(SCALES) {
        assert!(
            close(f64::from(*g), f64::from(w), 1e-6),
            "{:?}",
            choice.scales
        );
    }
    // Searching changes nothing in the block.
    assert_eq!(block.gamma, GAMMA);
    assert_eq!(block.linears[Q].data(), WQ);
}

#[test]
fn transform_block_folds_the_best_scales_and_keeps_the_float_output() {
    let mut block = HostBlock::new();
    let awq = AwqQuantizer {
        config: AwqConfig {
            clip: false,
            scheme: Scheme {
                weights: scheme(4),
                activations: None,
            },
            ..AwqConfig::default()
        },
    };
    let report = awq.transform_block(&mut block).unwrap();
    assert_eq!(report.notes.len(), 2, "{:?}", report.notes);
    assert_eq!(
        report.notes[0],
        "input_layernorm -> self_attn.q_proj, self_attn.v_proj: alpha 0.65, loss 9.524e-3"
    );
    assert!(report.notes[1].starts_with("self_attn.v_proj -> self_attn.o_proj: alpha "));
    for ((g, g0), s) in block.gamma.iter().zip(GAMMA).zip(SCALES) {
        assert!(close(f64::from(*g), f64::from(g0 / s), 1e-6));
    }
    let out = block.scope("self_attn", &[]).unwrap();
    for (a, b) in out.iter().zip(&block.fp["self_attn"]) {
        assert!((a - b).abs() < 1e-4 * b.abs().max(1.0), "{a} vs {b}");
    }
}

#[test]
fn the_clip_search_matches_the_reference_on_small_groups() {
    let w = Dense::new(vec![2, 8], CLIP_W.to_vec());
    let x = Dense::new(vec![12, 8], CLIP_X.to_vec());
    // Group 4 < 12 tokens: the Gram form.
    let max_val = clip_search(&w, &x, &scheme(4), "fc").unwrap();
    assert_eq!(max_val.shape(), [2, 2]);
    assert_eq!(max_val.data(), CLIP_MAX_G4);
    assert_ne!(max_val.data(), CLIP_ORG_G4, "the case must clip something");
    // One group of 8 over 6 tokens: the per-token form.
    let x6 = Dense::new(vec![6, 8], CLIP_X[..48].to_vec());
    let per_channel = WeightScheme {
        strategy: Strategy::Channel,
        ..scheme(8)
    };
    let max_val = clip_search(&w, &x6, &per_channel, "fc").unwrap();
    assert_eq!(max_val.data(), CLIP_MAX_G8);
    assert_eq!(
        clip_search(&w, &x6, &scheme(8), "fc").unwrap().data(),
        CLIP_MAX_G8
    );

    let mut clipped = w.clone();
    apply_clip(&mut clipped, &Dense::new(vec![2, 2], CLIP_MAX_G4.to_vec()));
    assert_eq!(clipped.data()[1], 2.2);
    assert_eq!(clipped.data()[14], -2.8);
    assert_eq!(clipped.data()[0], CLIP_W[0]);
}

#[test]
fn transform_block_clips_every_balance_linear_but_the_query() {
    let mut block = HostBlock::new();
    let awq = AwqQuantizer {
        config: AwqConfig {
            scheme: Scheme {
                weights: scheme(4),
                activations: None,
            },
            ..AwqConfig::default()
        },
    };
    let report = awq.transform_block(&mut block).unwrap();
    assert_eq!(report.notes.len(), 4, "{:?}", report.notes);
    assert!(
        report.notes[2].starts_with("self_attn.v_proj: clipped "),
        "{:?}",
        report.notes
    );
    assert!(
        report.notes[3].starts_with("self_attn.o_proj: clipped "),
        "{:?}",
        report.notes
    );
    // The same block folded without the clip, then clipped by hand: the same weights; the query
    // keeps its folded weight.
    let mut plain = HostBlock::new();
    let no_clip = AwqQuantizer {
        config: AwqConfig {
            clip: false,
            ..awq.config
        },
    };
    no_clip.transform_block(&mut plain).unwrap();
    assert_eq!(block.weight(Q).unwrap(), plain.weight(Q).unwrap());
    for linear in [V, O] {
        let mut w = plain.weight(linear).unwrap();
        let x = plain.input_tokens(linear, CLIP_TOKENS).unwrap();
        let max_val = clip_search(&w, &x, &scheme(4), linear).unwrap();
        apply_clip(&mut w, &max_val);
        assert_eq!(block.weight(linear).unwrap(), w, "{linear}");
    }
    assert_ne!(
        block.weight(V).unwrap(),
        plain.weight(V).unwrap(),
        "nothing was clipped"
    );
    assert!(skips_clip("self_attn.q_proj") && skips_clip("attention.self.key"));
    assert!(!skips_clip("self_attn.v_proj") && !skips_clip("mlp.down_proj"));
}

#[test]
fn a_mapping_without_any_finite_loss_is_an_error_naming_it() {
    let mut block = HostBlock::new();
    block.poison = true;
    let mapping = block.mappings[0].clone();
    let err = search_scales(&mut block, &mapping, &scheme(4), 2, false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "algorithm 'awq': model.layers.0: input_layernorm -> self_attn.q_proj, \
         self_attn.v_proj: no grid point gave a finite loss (losses [NaN, NaN]); NaN or inf in \
         the block's output"
    );
    block.stats.get_mut(Q).unwrap().abs_mean = None;
    let err = search_scales(&mut block, &mapping, &scheme(4), 2, false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "algorithm 'awq': model.layers.0: input_layernorm -> self_attn.q_proj, \
         self_attn.v_proj: no abs_mean statistic for 'self_attn.q_proj'"
    );
}

#[test]
fn a_group_size_that_does_not_divide_the_width_names_the_layer() {
    let mut block = HostBlock::new();
    let mapping = block.mappings[0].clone();
    let err = search_scales(&mut block, &mapping, &scheme(3), 2, false).unwrap_err();
    assert!(
        err.to_string()
            .contains("'model.layers.0.self_attn.q_proj' of shape [4, 8]: group_size 3"),
        "{err}"
    );
}

fn build(src: &str) -> Result<Box<dyn OneShot>> {
    let table: toml::Table = src.parse().unwrap();
    AlgorithmEntry::find("awq").unwrap().build_oneshot(&table)
}

fn build_err(src: &str) -> String {
    match build(src) {
        Ok(_) => panic!("'{src}' must be refused"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn awq_registers_with_llm_awq_defaults_and_refuses_bad_options() {
    let entry = AlgorithmEntry::find("awq").unwrap();
    assert_eq!(entry.kind, AlgorithmKind::OneShotQuantizer);
    let config = AwqConfig::from_table(&toml::Table::new()).unwrap();
    assert_eq!(config, AwqConfig::default());
    assert_eq!(config.n_grid, 20);
    assert_eq!(config.scheme.weights.strategy, Strategy::Group(128));
    assert_eq!(config.scheme.weights.quantizer, Quantizer::new(4, false));
    let awq = build("").unwrap();
    assert_eq!(awq.activation_quant(), None);
    assert_eq!(
        build_err("n_grid = 0"),
        "algorithm 'awq': 'n_grid' must be an integer >= 1, found 0"
    );
    assert_eq!(
        build_err("clip = 1"),
        "algorithm 'awq': 'clip' must be true or false, found 1"
    );
    assert!(
        build_err("duo_scaling = true\nweights = { strategy = \"tensor\" }")
            .contains("'duo_scaling' needs per-channel or group weights")
    );
    assert!(build_err("alpha = 0.5").starts_with("unknown key 'alpha' in [algorithm] of 'awq'"));
    let sym = AwqConfig::from_table(&"scheme = \"W4A16\"".parse().unwrap()).unwrap();
    assert!(sym.scheme.weights.quantizer.symmetric);
}

#[test]
fn compress_linear_rounds_to_the_scheme_grid() {
    let awq = AwqQuantizer {
        config: AwqConfig {
            scheme: Scheme {
                weights: scheme(4),
                activations: None,
            },
            ..AwqConfig::default()
        },
    };
    // Group [-1, 0.5, 2, 0.3]: 3-bit asymmetric, scale 3 / 7, zero round(7 / 3) = 2; 0.5 ->
    // round(1.1667) = 1 -> 3/7, 0.3 -> round(0.7) = 1 -> 3/7, -1 -> -2 -> -6/7, 2 -> 5 -> 15/7.
    let mut w = Dense::new(vec![1, 4], vec![-1.0, 0.5, 2.0, 0.3]);
    let stats = InputStats::default();
    let mut slot = LinearSlot {
        path: "fc",
        weight: &mut w,
        bias: None,
        stats: &stats,
        sparsity: 0.0,
    };
    awq.compress_linear(&mut slot).unwrap();
    let want = [-6.0 / 7.0, 3.0 / 7.0, 15.0 / 7.0, 3.0 / 7.0];
    for (g, w) in w.data().iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{:?}", w);
    }
}

/// Release timing of the per-Linear work on SmolLM2 shapes (`cargo test --release -p quant-awq
/// -- --ignored --nocapture smollm2_shapes`).
#[test]
#[ignore]
fn smollm2_shapes_timing() {
    let mut state = 1u64;
    let mut rand = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect()
    };
    // SmolLM2's hidden width 576 is not a multiple of 128: groups of 64 divide every width.
    let awq_scheme = WeightScheme {
        strategy: Strategy::Group(64),
        ..AwqConfig::default().scheme.weights
    };
    for (out, d_in) in [(1536, 576), (576, 1536), (576, 576), (192, 576)] {
        let w = Dense::new(vec![out, d_in], rand(out * d_in));
        let x = Dense::new(vec![512, d_in], rand(512 * d_in));
        let s = vec![1.1f32; d_in];
        // The best of three runs (the machine is shared).
        let (mut scaled, mut clip) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..3 {
            let t = std::time::Instant::now();
            let _ = quantize_scaled(&w, &s, &awq_scheme, "fc").unwrap();
            scaled = scaled.min(t.elapsed().as_secs_f64());
            let t = std::time::Instant::now();
            let _ = clip_search(&w, &x, &awq_scheme, "fc").unwrap();
            clip = clip.min(t.elapsed().as_secs_f64());
        }
        println!(
            "[{out}, {d_in}]: quantize_scaled {:.1} ms (x20 per mapping), clip_search {:.1} ms, {} threads",
            scaled * 1e3,
            clip * 1e3,
            rayon::current_num_threads()
        );
    }
}
