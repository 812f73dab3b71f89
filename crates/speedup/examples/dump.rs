use burn::backend::Capture;
use burn::prelude::*;
use compress_zoo::SmallCnn;

fn main() {
    let model = SmallCnn::new(&Device::flex());
    let device = Device::capture();
    let captured = device
        .capture_scope(|scope| {
            let m = model.clone().to_device(&device);
            let x = Tensor::<4>::zeros([1, 1, 8, 8], &device);
            let xid = x.clone().try_into_primitive::<Capture>().unwrap().id();
            let w = m
                .conv1
                .weight
                .val()
                .try_into_primitive::<Capture>()
                .unwrap()
                .id();
            eprintln!("conv1.weight id {w:?}");
            let y = m.forward(x);
            let id = y.try_into_primitive::<Capture>().unwrap().id();
            let _ = xid;
            scope.complete([], [id])
        })
        .unwrap();
    for op in &captured.graph.operations {
        println!("{op:?}");
    }
    println!("values: {:?}", captured.values.keys().collect::<Vec<_>>());
}
