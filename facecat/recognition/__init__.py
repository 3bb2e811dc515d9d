"""Face-recognition targets that adversarial faces are crafted against: the recognizer
interface, PyTorch and ONNX recognizers, and a PyTorch port of dlib's face-recognition ResNet."""
