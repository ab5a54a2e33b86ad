"""The zoo manifest: every model crossview knows by name.

Checksums and sizes were computed from the files in `../shared/models`. `url` is the public
download location where one exists; models with no public copy of these exact files say so in
`notes` and can only be resolved from a local models folder or the cache.
"""

from __future__ import annotations

from models.zoo.spec import ModelSpec, RemoteFile

_OMZ = "https://storage.openvinotoolkit.org/repositories/open_model_zoo/2023.0/models_bin/1"
_INTEL_RE_ID_NOTE = "Intel Open Model Zoo person re-identification (OSNet-like), input BGR 0-255."


def _omz_files(model: str, precision: str, xml: tuple[str, int], bin_: tuple[str, int]) -> tuple[RemoteFile, ...]:
    base = f"openvino/intel/{model}/{precision}/{model}"
    url = f"{_OMZ}/{model}/{precision}/{model}"
    return (
        RemoteFile(f"{base}.xml", xml[0], xml[1], f"{url}.xml"),
        RemoteFile(f"{base}.bin", bin_[0], bin_[1], f"{url}.bin"),
    )


def _intel_reid(name: str, model: str, precision: str, xml: tuple[str, int], bin_: tuple[str, int],
                notes: str = _INTEL_RE_ID_NOTE) -> ModelSpec:
    files = _omz_files(model, precision, xml, bin_)
    return ModelSpec(
        name=name, task="reid", format="openvino", files=files, primary=files[0].relpath,
        input_hw=(256, 128), channel_order="BGR", scale=1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
        output_dim=256, licence="Apache-2.0", precision=precision, input_name="data",
        output_name="reid_embedding", notes=notes,
    )


_RE_ID = "person-reidentification-retail"
_ATTR = "person-attributes-recognition-crossroad-0230"
_ADAS = "pedestrian-detection-adas-0002"

MODELS: tuple[ModelSpec, ...] = (
    _intel_reid(
        "reid/intel-0288", f"{_RE_ID}-0288", "FP16",
        ("0d5021c772e603dce69d9ef2e326ecf0a43234cc8b4c5bb5e8aa566f090bdb51", 614533),
        ("08e24c2f1dd976ff8e1f667b93db2950ac8db8da09e163e1ca6463b82d1dbc42", 364098),
        _INTEL_RE_ID_NOTE + " 0.18 M params: the edge model.",
    ),
    _intel_reid(
        "reid/intel-0288-fp32", f"{_RE_ID}-0288", "FP32",
        ("30f452b2ed2763f7bf429eea23f8f243ad0e7f3cdd7226db6888f1660efb3424", 450664),
        ("6496b8d51741703c9e9c7f6474cb96c60de1856d7b4fd77235e48cea146066a5", 728052),
    ),
    _intel_reid(
        "reid/intel-0287", f"{_RE_ID}-0287", "FP32",
        ("09af746c1068a3e89355e1f0226d3d6982dc1cd77634b1f70a40f1f654a94be1", 451147),
        ("7f53d18d11253455e0e11646b2176cf6509cc7c97cb5376f9b91b4c41e09a06c", 2362128),
    ),
    _intel_reid(
        "reid/intel-0286", f"{_RE_ID}-0286", "FP16",
        ("cc547e622d8aeabf97938213f68171bf59ac7d01c910ceadfea984aa96e5d1b5", 611793),
        ("d06beb9e2b2661d42b233f64ef623f3518fc46dc11f6b7dd53cda8962d9d1bd9", 2453724),
    ),
    _intel_reid(
        "reid/intel-0277", f"{_RE_ID}-0277", "FP16",
        ("82039b1bb986231c50345550e59def94e63579998e9cddbd1a312f293eb87729", 616140),
        ("6bb69e09d07733cc3896b29081d2627f92db7b9aacd50f1a8c3df491cb10f1b7", 4178806),
        _INTEL_RE_ID_NOTE + " 2.09 M params: the cloud re-scorer.",
    ),
    ModelSpec(
        name="reid/osnet-x0.25-msmt17", task="reid", format="onnx",
        files=(RemoteFile("onnx/osnet_x0_25_msmt17.onnx",
                          "61b2604171ef9d58d21758626f83b35a253c3d7123976523a6e03068c3c95d7b", 921616, None),),
        primary="onnx/osnet_x0_25_msmt17.onnx", input_hw=(256, 128), channel_order="RGB", scale=1.0 / 255.0,
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), output_dim=512,
        licence="MIT (torchreid weights; MSMT17 research use)", input_name="images",
        notes="torchreid OSNet x0.25 trained on MSMT17, exported to ONNX opset 12. No public ONNX copy: "
              "export it from torchreid's osnet_x0_25_msmt17 weights and place it in CROSSVIEW_MODELS.",
    ),
    ModelSpec(
        name="detect/yolov8n-int8-openvino", task="detect", format="ultralytics-openvino",
        files=(
            RemoteFile("yolov8n_int8_openvino_model/metadata.yaml",
                       "8845378bcc59dcd52c93d8223b0bfa1c45ef850834784068481d463f8f58a350", 1493, None),
            RemoteFile("yolov8n_int8_openvino_model/yolov8n.xml",
                       "5d5bc59c296831f8a757f6c5812850e4a280e6bbff7454cd84bdfc149773e545", 453943, None),
            RemoteFile("yolov8n_int8_openvino_model/yolov8n.bin",
                       "ce80180d82e8967cb6cf082fcc9b14494d676114007a1e062444975df7e39bf1", 3293328, None),
        ),
        primary="yolov8n_int8_openvino_model", input_hw=(640, 640), channel_order="RGB", scale=1.0 / 255.0,
        mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), output_dim=84, licence="AGPL-3.0 (Ultralytics)",
        precision="INT8",
        notes="Ultralytics YOLOv8n (COCO; class 0 = person) INT8 OpenVINO export. No public copy of this "
              "export: make it with `yolo export model=yolov8n.pt format=openvino int8=True`.",
    ),
    ModelSpec(
        name="attributes/intel-0230", task="attributes", format="openvino",
        files=_omz_files(
            _ATTR, "FP32",
            ("ca288994e74a27bc1912e610460054ca79165ad68c2ec555ccda2738591c1502", 183946),
            ("9a2c20aa88b282219d31b67c9252cdf844d6ce387090eb676e79e284fa3a25d8", 2939232),
        ),
        primary=f"openvino/intel/{_ATTR}/FP32/{_ATTR}.xml", input_hw=(160, 80), channel_order="BGR",
        scale=1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), output_dim=8, licence="Apache-2.0",
        notes="8 attribute probabilities (is_male, has_bag, has_backpack, has_hat, has_longsleeves, "
              "has_longpants, has_longhair, has_coat_jacket) + top/bottom colour points.",
    ),
    ModelSpec(
        name="attributes/intel-0230-int8", task="attributes", format="openvino",
        files=_omz_files(
            _ATTR, "FP16-INT8",
            ("4859c1df8a118a6de0fd0b1765a90f9480d9eccbbfa87371af763bfc6c2089a2", 477330),
            ("fd1c3de4609a5e42bea0a6dd1d5ce430c2932ce7ad92879957538c08595c0361", 754139),
        ),
        primary=f"openvino/intel/{_ATTR}/FP16-INT8/{_ATTR}.xml", input_hw=(160, 80), channel_order="BGR",
        scale=1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), output_dim=8, licence="Apache-2.0",
        precision="FP16-INT8",
    ),
    ModelSpec(
        name="detect/pedestrian-adas-0002", task="detect", format="openvino",
        files=_omz_files(
            _ADAS, "FP16",
            ("569e43b60fff50f9e7e635e5b523ac49b69a3858bfdaf3767e4650db165ac87d", 308923),
            ("a22aa7bda2d71c97689e0535b137f10e05dc57769a2d4bd8726099f45ccafe91", 2330176),
        ),
        primary=f"openvino/intel/{_ADAS}/FP16/{_ADAS}.xml", input_hw=(384, 672), channel_order="BGR",
        scale=1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), output_dim=7, licence="Apache-2.0",
        precision="FP16", notes="SSD pedestrian detector: detection_out [1,1,200,7].",
    ),
    ModelSpec(
        name="detect/pedestrian-adas-0002-int8", task="detect", format="openvino",
        files=_omz_files(
            _ADAS, "FP16-INT8",
            ("58e591e643dd43a813e018fdc7d69c1ab942d8e19d234f8a3036f85481a608f9", 455222),
            ("c2c63a6a4871b1f9a21868e779e73d9cfbdd48b8171e61b80f32e8d13adfe502", 1223675),
        ),
        primary=f"openvino/intel/{_ADAS}/FP16-INT8/{_ADAS}.xml", input_hw=(384, 672), channel_order="BGR",
        scale=1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), output_dim=7, licence="Apache-2.0",
        precision="FP16-INT8",
    ),
)

_SAMPLE_VIDEOS = "https://github.com/intel-iot-devkit/sample-videos/raw/master"

# Sample data the demo and tests use, resolved like models (CROSSVIEW_DATA, cache, URL).
SAMPLES: tuple[RemoteFile, ...] = (
    RemoteFile("video/one-by-one-person-detection.mp4",
               "a5964aa259099a482a8b360ffc2c57b5a30f84d5919236a4dad01f8e929ac07c", 3291918,
               f"{_SAMPLE_VIDEOS}/one-by-one-person-detection.mp4"),
    RemoteFile("video/people-detection.264",
               "00a29491311d3e814af60efb00b1ced1a85046e4e436a8ca29c22e0769fb07e8", 1378122, None),
    RemoteFile("video/pedestrians__amirhossein.mp4",
               "f99214a8261ac5b8d466988b7c40d1c9bbe720e0a5149acc79c68c9101de1a7a", 1540663, None),
    RemoteFile("video/pedestrians__nandinib1999.mp4",
               "f729805bd4f6265bb3eabb8cb121b07e701e9001a7c7854560cfd2cb1c64acbb", 612995, None),
)
