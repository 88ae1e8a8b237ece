import { describeShortChaos } from "./short.js";

describeShortChaos("etcd-cluster");
