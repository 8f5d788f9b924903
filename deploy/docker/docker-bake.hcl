# Builds every Parley image for amd64 and arm64 (Graviton) with one command:
#
#   REGISTRY=123456789012.dkr.ecr.eu-west-1.amazonaws.com TAG=0.1.0 \
#     docker buildx bake -f deploy/docker/docker-bake.hcl --push
#
# Needs a buildx builder that can output multi-platform images
# (`docker buildx create --use`); no QEMU is needed, the Dockerfile
# cross-compiles. `docker buildx bake -f deploy/docker/docker-bake.hcl local`
# builds the single-architecture images docker-compose.yml uses.

variable "REGISTRY" {
  default = "parley"
}

variable "TAG" {
  default = "dev"
}

variable "PLATFORMS" {
  default = "linux/amd64,linux/arm64"
}

group "default" {
  targets = ["services"]
}

target "services" {
  name       = binary
  matrix = {
    binary = [
      "parley-session",
      "parley-transcoder",
      "parley-transcriber",
      "parley-connect-relay",
      "parley-whatsapp-sender",
      "parley-gateway",
    ]
  }
  context    = "."
  dockerfile = "deploy/docker/Dockerfile"
  args = {
    BINARY = binary
  }
  platforms = split(",", PLATFORMS)
  tags      = ["${REGISTRY}/${binary}:${TAG}"]
}

# The images deploy/docker-compose.yml runs, for this machine's
# architecture only, loaded into the local image store (the sandbox is
# included: it plays Connect, Social Messaging and Transcribe locally).
target "local" {
  name = "local-${binary}"
  matrix = {
    binary = [
      "parley-session",
      "parley-transcoder",
      "parley-transcriber",
      "parley-connect-relay",
      "parley-whatsapp-sender",
      "parley-gateway",
      "parley-sandbox",
    ]
  }
  context    = "."
  dockerfile = "deploy/docker/Dockerfile"
  args = {
    BINARY = binary
  }
  tags   = ["parley/${binary}:dev"]
  output = ["type=docker"]
}
